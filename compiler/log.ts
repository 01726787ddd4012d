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
export function isQuiet(): boolean {
  return quiet;
}

/** The live status lines on a terminal (progress.ts): cleared before a message, drawn again after it. */
export interface StatusArea {
  clear(): void;
  draw(): void;
}
let status: StatusArea | undefined;
export function setStatusArea(a: StatusArea | undefined): void {
  status = a;
}

/** Every message goes through here, so it scrolls above the status lines instead of through them. */
export function writeStderr(text: string): void {
  status?.clear();
  process.stderr.write(text);
  status?.draw();
}

export function debug(msg: string): void {
  if (debugEnabled) writeStderr(`debug: ${msg}\n`);
}
export function info(msg: string): void {
  if (!quiet) writeStderr(`${msg}\n`);
}
export function warn(msg: string): void {
  writeStderr(`warning: ${msg}\n`);
}

/** A timed, named scope: `step("applying overlays", ...)` prints its duration when done. */
export async function timed<T>(label: string, fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const start = performance.now();
  const value = await fn();
  const seconds = (performance.now() - start) / 1000;
  return { value, seconds };
}
