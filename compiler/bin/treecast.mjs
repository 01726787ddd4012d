#!/usr/bin/env node
// Entry point: load the TypeScript sources through tsx, so `npx treecast`
// works from a checkout and from `npm install -g` without a build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli.ts');
const code = await main(process.argv.slice(2));
process.exitCode = code;
