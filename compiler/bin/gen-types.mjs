#!/usr/bin/env node
// Regenerates compiler/manifest/types.generated.ts from the JSON Schemas.
// test/schema-types.test.ts fails when the committed file differs from this output.
import { writeFileSync } from 'node:fs';
import { generateSchemaTypes } from './schema-types.mjs';

const out = new URL('../manifest/types.generated.ts', import.meta.url);
writeFileSync(out, await generateSchemaTypes());
console.log(`wrote ${out.pathname}`);
