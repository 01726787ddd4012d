/**
 * What a long-running program is doing, while it runs. The exec wrapper
 * tracks every program it starts; a program that runs longer than a moment
 * gets a status: its label, the elapsed time, and its own progress (the
 * count of packages apt downloaded/unpacked, mmdebstrap's last "I:" line,
 * the bytes an output has read and written, or what a step's `parse` makes
 * of its output lines).
 *
 * On a terminal (stderr and stdout both TTYs, so never under `--json | jq`)
 * the statuses are live lines at the bottom of stderr, redrawn four times a
 * second and cleared when the program ends. Otherwise (CI logs) a plain line
 * every 10 s. Nothing at all when log.ts is quiet.
 *
 * The redraw is hand-written: log-update 8 needs Node 22, and 6.x brings
 * about a dozen packages (wrap-ansi, slice-ansi, cli-cursor, ...) for what is
 * here three escape codes, as every line is cut to the terminal width and
 * never wraps.
 */
import { readFileSync, statSync } from 'node:fs';
import { AsyncLocalStorage } from 'node:async_hooks';
import { isQuiet, setStatusArea, writeStderr } from './log.js';

export interface ProgressSpec {
  /** What runs, e.g. "edge-host: squashfs". Default: the current progressScope, else the program's name. */
  label?: string;
  /** A status from one output line of the program (undefined: nothing new in this line). */
  parse?: (line: string) => string | undefined;
  /** Show the size of this file as it grows (the artifact being written). */
  file?: string;
  /** Bytes the program is expected to read in all: its read bytes become a percentage. */
  totalBytes?: number;
}

/** How often the plain (non-terminal) line is printed. TREECAST_PROGRESS_INTERVAL_MS: a knob for tests. */
export function plainInterval(): number {
  const v = Number(process.env.TREECAST_PROGRESS_INTERVAL_MS);
  return Number.isFinite(v) && v > 0 ? v : 10_000;
}

/** A terminal shows a status only for programs that run longer than this: short ones would flicker. */
const TTY_DELAY_MS = 1000;
const TTY_REDRAW_MS = 250;

const scope = new AsyncLocalStorage<string>();

/** Name the programs `fn` runs (e.g. "edge-host: base (debian)"), for their status lines. */
export function progressScope<T>(label: string, fn: () => Promise<T>): Promise<T> {
  return scope.run(label, fn);
}

const MiB = 1024 * 1024;
const mib = (n: number) => `${(n / MiB).toFixed(n < 10 * MiB ? 1 : 0)} MiB`;

/** Counts and the last line of apt and mmdebstrap output: the default status of a program. */
export class OutputStatus {
  private got = 0;
  private unpacked = 0;
  private setUp = 0;
  private last = '';
  private parsed: string | undefined;

  constructor(private readonly parse?: (line: string) => string | undefined) {}

  line(raw: string): void {
    const l = raw.trim();
    if (!l) return;
    const p = this.parse?.(l);
    if (p !== undefined) {
      this.parsed = p;
      return;
    }
    if (/^Get:\s*\d+/.test(l)) this.got++;
    else if (/^Unpacking /.test(l)) this.unpacked++;
    else if (/^Setting up /.test(l)) this.setUp++;
    this.last = l;
  }

  text(): string {
    if (this.parsed !== undefined) return this.parsed;
    const counts = [this.got && `downloaded ${this.got}`, this.unpacked && `unpacked ${this.unpacked}`, this.setUp && `set up ${this.setUp}`].filter(Boolean);
    if (counts.length) return `${counts.join(', ')} packages`;
    return this.last;
  }
}

/** Bytes a process has read, from /proc (Linux): how far mksquashfs or tar is through the tree. */
function readBytes(pid: number): number | undefined {
  try {
    const m = /^rchar:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function fileSize(file: string): number | undefined {
  try {
    return statSync(file).size;
  } catch {
    return undefined;
  }
}

export class Tracker {
  readonly label: string;
  private readonly started = performance.now();
  private readonly status: OutputStatus;
  private pids: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private partial = '';

  constructor(
    fallbackLabel: string,
    private readonly spec: ProgressSpec = {},
  ) {
    this.label = spec.label ?? scope.getStore() ?? fallbackLabel;
    this.status = new OutputStatus(spec.parse);
    if (isQuiet()) return;
    if (terminal()) {
      area.add(this);
    } else {
      this.timer = setInterval(() => writeStderr(`${this.render()}\n`), plainInterval());
      this.timer.unref();
    }
  }

  /** A chunk of the program's output (stdout or stderr); split into lines here. `\r` ends a line too (progress bars). */
  chunk(data: Buffer | string): void {
    const text = this.partial + data.toString();
    const lines = text.split(/\r\n|\r|\n/);
    this.partial = lines.pop() ?? '';
    if (this.partial.length > 4096) this.partial = this.partial.slice(-4096);
    for (const l of lines) this.status.line(l);
  }

  addPid(pid: number | undefined): void {
    if (pid) this.pids.push(pid);
  }

  seconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  /** "edge-host: squashfs 40 s: read 120 MiB (55%), wrote 40.2 MiB" */
  render(): string {
    const parts: string[] = [];
    const own = this.status.text();
    if (own) parts.push(own);
    if (this.spec.file || this.spec.totalBytes) {
      const read = this.pids.map(readBytes).find((n) => n !== undefined);
      if (read !== undefined && this.spec.totalBytes) parts.push(`read ${mib(read)} (${Math.min(100, Math.round((read / this.spec.totalBytes) * 100))}%)`);
      else if (read !== undefined) parts.push(`read ${mib(read)}`);
    }
    const written = this.spec.file ? fileSize(this.spec.file) : undefined;
    if (written !== undefined) parts.push(`wrote ${mib(written)}`);
    return `${this.label} ${Math.round(this.seconds())} s${parts.length ? `: ${parts.join(', ')}` : ''}`;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    area.delete(this);
  }
}

/** A person at a terminal (stderr and stdout both TTYs): never under `--json | jq` or in a CI log. */
export function terminal(): boolean {
  return Boolean(process.stderr.isTTY && process.stdout.isTTY) && process.env.TERM !== 'dumb';
}

/**
 * The live lines at the bottom of a terminal. log.ts clears them before it
 * prints a message and draws them again after, so messages scroll above.
 */
class StatusArea {
  private readonly trackers = new Set<Tracker>();
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;

  add(t: Tracker): void {
    this.trackers.add(t);
    if (!this.timer) {
      this.timer = setInterval(() => this.redraw(), TTY_REDRAW_MS);
      this.timer.unref();
      setStatusArea(this);
    }
  }

  delete(t: Tracker): void {
    if (!this.trackers.delete(t)) return;
    this.redraw();
    if (!this.trackers.size && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      setStatusArea(undefined);
    }
  }

  private lines(): string[] {
    const width = Math.max(20, (process.stderr.columns || 80) - 1);
    return [...this.trackers].filter((t) => t.seconds() * 1000 >= TTY_DELAY_MS).map((t) => t.render().slice(0, width));
  }

  /** Erase what was drawn: to the start of its first line, then to the end of the screen. */
  clear(): void {
    if (!this.drawn) return;
    process.stderr.write(`${this.drawn > 1 ? `\x1b[${this.drawn - 1}A` : ''}\r\x1b[J`);
    this.drawn = 0;
  }

  /** Draw the lines, leaving the cursor at the end of the last one (no newline: nothing scrolls). */
  draw(): void {
    const lines = this.lines();
    if (lines.length) process.stderr.write(lines.join('\n'));
    this.drawn = lines.length;
  }

  redraw(): void {
    this.clear();
    this.draw();
  }
}

const area = new StatusArea();
