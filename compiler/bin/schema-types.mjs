import { readFileSync } from 'node:fs';
import { compile } from 'json-schema-to-typescript';

const schemas = ['image.schema.json', 'treecast.schema.json'];

/** TypeScript declarations for every schema in schemas/, as one file. */
export async function generateSchemaTypes() {
  const parts = ['/* eslint-disable */\n// Generated from schemas/*.json by `npm run gen:types`. Do not edit by hand.\n'];
  for (const file of schemas) {
    const schema = JSON.parse(readFileSync(new URL(`../../schemas/${file}`, import.meta.url), 'utf8'));
    parts.push(await compile(schema, schema.title, { bannerComment: '', additionalProperties: false, strictIndexSignatures: true, format: true }));
  }
  return parts.join('\n');
}
