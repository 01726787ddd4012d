import path from 'node:path';
import { EXIT, UsageError } from '../diagnostics.js';
import { openRepo, privateDirBeside } from '../repo.js';
import { startServer } from '../serve/index.js';
import type { Command } from './command.js';

export const serveCommand: Command = {
  name: 'serve',
  summary: 'serve the publish dir over HTTP (GET/HEAD, Range, ETag)',
  usage: 'treecast serve [--dir public] [--private-dir private] [--host 127.0.0.1] [--port 8080]',
  help: 'Static file server for hosts (ostree pull, iPXE, kickstart) and people (index.html). Logs one line per request.\nUnder /private/ it serves the private tree (default: "private" beside the publish dir) to nodes with a token only (docs/nodes.md).\nAny static web server can serve the same tree instead (see docs/serving.md).',
  options: { dir: { type: 'string' }, 'private-dir': { type: 'string' }, host: { type: 'string' }, port: { type: 'string' } },
  async run(ctx) {
    const repo = ctx.values.dir ? undefined : openRepo({ repo: ctx.repo });
    const dir = repo ? repo.publishDir : path.resolve(String(ctx.values.dir));
    // Beside the publish dir, like publish puts it (Repo.privateDir).
    const privateDir = ctx.values['private-dir'] ? path.resolve(String(ctx.values['private-dir'])) : (repo?.privateDir ?? privateDirBeside(dir));
    const port = Number(ctx.values.port ?? 8080);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, not ${ctx.values.port}`);
    const server = await startServer({ dir, privateDir, host: String(ctx.values.host ?? '127.0.0.1'), port, log: (l) => process.stderr.write(l + '\n') });
    process.stdout.write(`serving ${dir} at ${server.url}/\n`);
    await new Promise<void>((resolve) => {
      const stop = () => void server.close().then(resolve);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    return EXIT.ok;
  },
};
