import path from 'node:path';
import { EXIT, UsageError } from '../diagnostics.js';
import { openRepo } from '../repo.js';
import { startServer } from '../serve/index.js';
import type { Command } from './command.js';

export const serveCommand: Command = {
  name: 'serve',
  summary: 'serve the publish dir over HTTP (GET/HEAD, Range, ETag)',
  usage: 'treecast serve [--dir public] [--host 127.0.0.1] [--port 8080]',
  help: 'Static file server for hosts (ostree pull, iPXE, kickstart) and people (index.html). Logs one line per request.\nAny static web server can serve the same tree instead (see docs/serving.md).',
  options: { dir: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' } },
  async run(ctx) {
    const dir = ctx.values.dir ? path.resolve(String(ctx.values.dir)) : openRepo({ repo: ctx.repo }).publishDir;
    const port = Number(ctx.values.port ?? 8080);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, not ${ctx.values.port}`);
    const server = await startServer({ dir, host: String(ctx.values.host ?? '127.0.0.1'), port, log: (l) => process.stderr.write(l + '\n') });
    process.stdout.write(`serving ${dir} at ${server.url}/\n`);
    await new Promise<void>((resolve) => {
      const stop = () => void server.close().then(resolve);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    return EXIT.ok;
  },
};
