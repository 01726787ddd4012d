/** What every CLI verb looks like: its own options and help, and a run function returning the exit code. */
import type { ParseArgsConfig } from 'node:util';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface CommandContext {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  json: boolean;
  repo?: string;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** Help text lines for the verb's own options. */
  help: string;
  options: OptionSpec;
  run(ctx: CommandContext): Promise<number>;
}

/** Write a JSON document to stdout (machine output for --json). */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}
