/**
 * The schemas are the single source of truth: the committed TypeScript types
 * must be exactly what they generate, every property is documented (editors
 * show the descriptions), and every object refuses unknown keys (typos are errors).
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from './helpers/cli.js';

const SCHEMAS = ['image.schema.json', 'treecast.schema.json'];
type Schema = Record<string, unknown>;

function loadSchema(file: string): Schema {
  return JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'schemas', file), 'utf8')) as Schema;
}

/** Follows a local "#/$defs/x" reference. */
function resolveRef(root: Schema, ref: string): Schema {
  if (!ref.startsWith('#/')) throw new Error(`non-local $ref ${ref}`);
  let node: unknown = root;
  for (const part of ref.slice(2).split('/')) node = (node as Schema | undefined)?.[part];
  if (typeof node !== 'object' || node === null) throw new Error(`unresolved $ref ${ref}`);
  return node as Schema;
}

interface Found {
  /** property path -> its schema (own, or its $ref target) */
  properties: Map<string, Schema>;
  /** path -> object schema */
  objects: Map<string, Schema>;
}

/**
 * Every schema that defines data: the root, properties, items, additionalProperties
 * schemas, $defs and the branches of oneOf/anyOf/allOf. Not if/then/else/not: those
 * only constrain properties already defined (`path: false` in a then).
 */
function walk(root: Schema): Found {
  const found: Found = { properties: new Map(), objects: new Map() };
  const visit = (node: unknown, at: string): void => {
    if (typeof node !== 'object' || node === null) return;
    const s = node as Schema;
    if (s.type === 'object' || (Array.isArray(s.type) && s.type.includes('object'))) found.objects.set(at, s);
    for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, unknown>)) {
      if (typeof v !== 'object' || v === null) continue;
      const prop = v as Schema;
      found.properties.set(`${at}.${k}`, typeof prop.$ref === 'string' && prop.description === undefined ? resolveRef(root, prop.$ref) : prop);
      visit(v, `${at}.${k}`);
    }
    for (const [k, v] of Object.entries((s.$defs ?? {}) as Record<string, unknown>)) visit(v, `$defs.${k}`);
    if (s.items) visit(s.items, `${at}[]`);
    if (typeof s.additionalProperties === 'object') visit(s.additionalProperties, `${at}{}`);
    for (const k of ['oneOf', 'anyOf', 'allOf']) ((s[k] ?? []) as unknown[]).forEach((b, i) => visit(b, `${at}.${k}[${i}]`));
  };
  visit(root, '#');
  return found;
}

describe('schema-types', () => {
  it('compiler/manifest/types.generated.ts is what the schemas generate (run `npm run gen:types`)', async () => {
    const url = pathToFileURL(path.join(PROJECT_ROOT, 'compiler/bin/schema-types.mjs')).href;
    const { generateSchemaTypes } = (await import(url)) as { generateSchemaTypes: () => Promise<string> };
    const generated = await generateSchemaTypes();
    const committed = fs.readFileSync(path.join(PROJECT_ROOT, 'compiler/manifest/types.generated.ts'), 'utf8');
    expect(generated).toContain('export interface ImageManifest');
    expect(generated).toContain('export interface RepoConfig');
    expect(committed).toBe(generated);
  });

  describe.each(SCHEMAS)('%s', (file) => {
    const schema = loadSchema(file);
    const { properties, objects } = walk(schema);

    it('has a title and a description', () => {
      expect(schema.title).toBeTypeOf('string');
      expect(schema.description).toBeTypeOf('string');
    });

    it('every property (recursively, including $defs) has a description', () => {
      expect(properties.size).toBeGreaterThan(5);
      const undocumented = [...properties].filter(([, s]) => typeof s.description !== 'string' || s.description.trim().length < 3).map(([p]) => p);
      expect(undocumented).toEqual([]);
    });

    it('every object schema has additionalProperties: false (free-form maps constrain their keys with propertyNames)', () => {
      expect(objects.size).toBeGreaterThan(0);
      const open = [...objects].filter(([, s]) => {
        if (s.additionalProperties === false) return false;
        // A map of user-chosen keys (metadata): keys and values must still be constrained.
        const isMap = s.properties === undefined && typeof s.propertyNames === 'object' && typeof s.additionalProperties === 'object';
        return !isMap;
      });
      expect(open.map(([p]) => p)).toEqual([]);
    });
  });

  it('the walk sees nested and $defs properties (guards the checks above)', () => {
    const { properties, objects } = walk(loadSchema('image.schema.json'));
    for (const p of ['#.name', '#.units.enable', '$defs.file.mode', '$defs.user.ssh-authorized-keys', '$defs.outputs.diskless.kernel-args', '$defs.base.source']) {
      expect(properties.has(p), p).toBe(true);
    }
    // A $ref-only property is documented by its target.
    expect(properties.get('$defs.file.mode')?.description).toMatch(/octal/i);
    for (const o of ['#', '#.units', '#.metadata', '$defs.file', '$defs.outputs.squashfs']) expect(objects.has(o), o).toBe(true);
  });
});
