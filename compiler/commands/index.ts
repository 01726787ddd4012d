/**
 * The CLI verbs, in the order `treecast --help` lists them. Each module is
 * loaded only when its verb runs: `treecast validate` should not pay for
 * loading the build, publish and boot code.
 */
import type { Command } from './command.js';

export interface VerbEntry {
  name: string;
  summary: string;
  load: () => Promise<Command>;
}

export const commands: VerbEntry[] = [
  { name: 'validate', summary: 'check image manifests against the schema and the semantic rules', load: async () => (await import('./validate.js')).validateCommand },
  { name: 'plan', summary: 'show which images a git change affects, why, and how their manifests change', load: async () => (await import('./plan.js')).planCommand },
  { name: 'build', summary: 'compile images into OSTree commits and artifacts in the local cache', load: async () => (await import('./build.js')).buildCommand },
  { name: 'publish', summary: 'put built images into the publish dir: OSTree repo, artifacts, kickstart, iPXE, index', load: async () => (await import('./publish.js')).publishCommand },
  { name: 'serve', summary: 'serve the publish dir over HTTP (GET/HEAD, Range, ETag)', load: async () => (await import('./serve.js')).serveCommand },
  { name: 'gc', summary: 'free space in the build cache: unused cache refs, old local commits, stale out/ versions, leftovers', load: async () => (await import('./gc.js')).gcCommand },
  { name: 'diff', summary: 'compare two versions of an image: packages, files, metadata', load: async () => (await import('./diff.js')).diffCommand },
  { name: 'shell', summary: 'step into a throwaway copy of a built or published image version, in the postprocess sandbox', load: async () => (await import('./shell.js')).shellCommand },
  { name: 'unpack', summary: 'write the booted layout of a built or published image version to a new directory', load: async () => (await import('./unpack.js')).unpackCommand },
  { name: 'nodes', summary: 'list the diskless fleet of nodes.yaml with its tokens and boot scripts; rotate node tokens', load: async () => (await import('./nodes.js')).nodesCommand },
  { name: 'ci', summary: 'validate, plan, build the affected images and publish them (what CI runs on push)', load: async () => (await import('./ci.js')).ciCommand },
  { name: 'watch', summary: 'rebuild and republish affected images whenever their inputs change', load: async () => (await import('./watch.js')).watchCommand },
  { name: 'install-test', summary: 'play a host: install a published image into a scratch sysroot and boot it under QEMU', load: async () => (await import('./install-test.js')).installTestCommand },
  { name: 'keygen', summary: 'make a GPG signing key for a new published repository', load: async () => (await import('./keygen.js')).keygenCommand },
  { name: 'doctor', summary: 'check that the programs treecast drives are installed', load: async () => (await import('./doctor.js')).doctorCommand },
];
