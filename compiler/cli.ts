/**
 * treecast command line: `treecast <verb> [options]`. Each verb lives in
 * compiler/commands/; this file only parses, dispatches and maps failures to
 * exit codes (0 ok, 1 invalid input or failed job, 2 usage, 3 internal bug).
 */
import { parseArgs } from 'node:util';
import { EXIT, formatDiagnostic, UsageError, UserError } from './diagnostics.js';
import { setDebug } from './log.js';
import { commands } from './commands/index.js';
import type { OptionSpec } from './commands/command.js';

const GLOBAL: OptionSpec = {
  repo: { type: 'string' },
  json: { type: 'boolean' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

function mainHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'treecast — declarative GitOps image compiler',
    '',
    'Usage: treecast <command> [options]',
    '       treecast [--repo DIR] [--json] [--debug] <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Global options:',
    '  --repo DIR   repository of image specs (default: nearest dir with treecast.yaml, or the git top level)',
    '  --json       machine-readable output on stdout',
    '  --debug      log every command run; show stacks of internal errors',
    '  -h, --help   help for treecast or for a command',
  ].join('\n');
}

/**
 * Global options typed before the verb (`treecast --repo DIR build`, as with
 * git and kubectl): taken off the front and handed to the verb's own parser,
 * which then sees them exactly as if they came after the verb.
 */
export function splitGlobalPrefix(argv: string[]): { prefix: string[]; verb?: string; rest: string[] } {
  const prefix: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-') || a === '--help' || a === '-h' || a === '--version') break;
    if (a === '--json' || a === '--debug' || a.startsWith('--repo=')) prefix.push(a);
    else if (a === '--repo') {
      const value = argv[i + 1];
      if (value === undefined || value.startsWith('-')) throw new UsageError(`option '--repo <value>' argument missing (see: treecast --help)`);
      prefix.push(a, value);
      i++;
    } else throw new UsageError(`unknown global option "${a}" before the command (global options: --repo DIR, --json, --debug; see: treecast --help)`);
  }
  return { prefix, verb: argv[i], rest: argv.slice(i + 1) };
}

export async function main(argv: string[]): Promise<number> {
  let split: ReturnType<typeof splitGlobalPrefix>;
  try {
    split = splitGlobalPrefix(argv);
  } catch (err) {
    return reportFailure(err, argv.includes('--debug'));
  }
  const { prefix, verb } = split;
  const rest = [...prefix, ...split.rest];
  if (!verb || verb === '--help' || verb === '-h' || verb === 'help') {
    process.stdout.write(mainHelp() + '\n');
    return verb ? EXIT.ok : EXIT.usage;
  }
  if (verb === '--version') {
    process.stdout.write('treecast 0.1.0\n');
    return EXIT.ok;
  }
  const entry = commands.find((c) => c.name === verb);
  let debug = argv.includes('--debug');
  try {
    if (!entry) throw new UsageError(`unknown command "${verb}" (commands: ${commands.map((c) => c.name).join(', ')})`);
    const cmd = await entry.load();
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: { ...GLOBAL, ...cmd.options }, allowPositionals: true, strict: true });
    } catch (err) {
      throw new UsageError(`${(err as Error).message.replace(/\. To specify.*$/s, '')} (see: treecast ${cmd.name} --help)`);
    }
    const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
    debug = Boolean(values.debug);
    setDebug(debug);
    if (values.help) {
      process.stdout.write(`Usage: ${cmd.usage}\n\n${cmd.summary}.\n\n${cmd.help}\n`);
      return EXIT.ok;
    }
    return await cmd.run({ values, positionals: parsed.positionals, json: Boolean(values.json), repo: values.repo as string | undefined });
  } catch (err) {
    return reportFailure(err, debug);
  }
}

/** Environment failures that are not bugs: a full disk, a missing permission. */
const ENV_ERRORS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EROFS: 'read-only file system',
};

function environmentError(err: unknown): string | undefined {
  for (let e = err as { code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.code && ENV_ERRORS[e.code]) return ENV_ERRORS[e.code];
  }
  return undefined;
}

export function reportFailure(err: unknown, debug: boolean): number {
  const env = environmentError(err);
  if (env && !(err instanceof UserError)) {
    process.stderr.write(`treecast: ${env}: ${err instanceof Error ? err.message : String(err)}
`);
    if (debug && err instanceof Error) process.stderr.write(`${err.stack}
`);
    return EXIT.invalid;
  }
  if (err instanceof UserError) {
    for (const d of err.diagnostics) process.stderr.write(formatDiagnostic(d) + '\n');
    process.stderr.write(`treecast: ${err.message}\n`);
    if (debug && err.stack) process.stderr.write(err.stack + '\n');
    return err.exitCode;
  }
  process.stderr.write(`treecast: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
  if (debug && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  else process.stderr.write('(this is a bug in treecast; run again with --debug for the stack trace)\n');
  return EXIT.internal;
}
