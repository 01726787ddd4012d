/**
 * The real `treecast serve` as a child process on a free port of 127.0.0.1,
 * for tests whose clients (ostree, treecast build) are other processes. Its
 * access log goes to a file, never a pipe that could fill while the test
 * waits on something else.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { BIN } from './cli.js';

export interface ServeProcess {
  child: ChildProcess;
  /** http://127.0.0.1:PORT (no trailing slash). */
  url: string;
  logFile: string;
}

/** `o.bin`/`o.env`/`o.cwd`: another checkout's treecast (bench/ratios.ts serves its scratch clone). */
export async function startServe(dir: string, logFile: string, o: { bin?: string; env?: NodeJS.ProcessEnv; cwd?: string; startTimeoutMs?: number } = {}): Promise<ServeProcess> {
  const fd = fs.openSync(logFile, 'a');
  const child = spawn(process.execPath, [o.bin ?? BIN, 'serve', '--dir', dir, '--host', '127.0.0.1', '--port', '0'], { cwd: o.cwd, env: o.env, stdio: ['ignore', 'pipe', fd] });
  fs.closeSync(fd);
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`treecast serve did not start: ${out}`)), o.startTimeoutMs ?? 20_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /at (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.on('exit', (code) => reject(new Error(`treecast serve exited (${code}): ${out}`)));
  });
  return { child, url, logFile };
}

export async function stopServe(s: ServeProcess | undefined): Promise<void> {
  if (!s || s.child.exitCode !== null) return;
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

export const accessLines = (s: ServeProcess) => fs.readFileSync(s.logFile, 'utf8').split('\n').filter((l) => /"(GET|HEAD) /.test(l));

/** The access log once the server has logged every finished request (a line is written when the response ends, which can be after the client exits). */
export async function settledAccessLines(s: ServeProcess): Promise<string[]> {
  let last = accessLines(s);
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    const now = accessLines(s);
    if (now.length === last.length) return now;
    last = now;
  }
}
