import { describe, expect, it } from 'vitest';
import { commands } from '../compiler/commands/index.js';
import { runCli } from './helpers/cli.js';

describe('verb registry', () => {
  it('lists each verb with the summary its module declares, and every verb answers --help', async () => {
    for (const entry of commands) {
      const cmd = await entry.load();
      expect(cmd.name).toBe(entry.name);
      expect(cmd.summary).toBe(entry.summary);
    }
    for (const entry of commands) {
      const r = runCli([entry.name, '--help']);
      expect(r.code, entry.name).toBe(0);
      expect(r.stdout).toContain(`Usage: treecast ${entry.name}`);
    }
  }, 120_000);
});
