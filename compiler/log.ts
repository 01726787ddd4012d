/**
 * Progress and debug output, always on stderr so stdout stays clean for --json.
 */
let debugEnabled = process.env.TREECAST_DEBUG === '1';
let quiet = false;

export function setDebug(on: boolean): void {
  debugEnabled = on;
}
export function setQuiet(on: boolean): void {
  quiet = on;
}
export function isDebug(): boolean {
  return debugEnabled;
}
export function debug(msg: string): void {
  if (debugEnabled) process.stderr.write(`debug: ${msg}\n`);
}
export function info(msg: string): void {
  if (!quiet) process.stderr.write(`${msg}\n`);
}
export function warn(msg: string): void {
  process.stderr.write(`warning: ${msg}\n`);
}

/** A timed, named scope: `step("applying overlays", ...)` prints its duration when done. */
export async function timed<T>(label: string, fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const start = performance.now();
  const value = await fn();
  const seconds = (performance.now() - start) / 1000;
  return { value, seconds };
}
