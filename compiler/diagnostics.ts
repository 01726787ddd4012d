/**
 * User-facing errors. Validation returns Diagnostics as data; the CLI prints
 * them one per line as `file:line:col: key.path: message (hint: ...)`.
 * Only internal bugs ever show a stack trace (and only with --debug).
 */

/** A place in a source file. `via` is the chain of include entries that pulled the file in. */
export interface Loc {
  file: string; // as shown to the user: relative to the repository root when inside it
  line: number; // 1-based
  col: number; // 1-based
  via?: Loc[];
}

export interface Diagnostic {
  loc?: Loc;
  /** Key path in the manifest, e.g. `files[3].mode`. Empty for whole-file problems. */
  path?: string;
  message: string;
  hint?: string;
}

export function formatLoc(loc: Loc): string {
  return `${loc.file}:${loc.line}:${loc.col}`;
}

export function formatDiagnostic(d: Diagnostic): string {
  let out = d.loc ? `${formatLoc(d.loc)}: ` : '';
  if (d.path) out += `${d.path}: `;
  out += d.message;
  if (d.hint) out += ` (hint: ${d.hint})`;
  if (d.loc?.via?.length) {
    out += ' [included from ' + d.loc.via.map(formatLoc).join(' <- ') + ']';
  }
  return out;
}

/** Exit codes shared by every verb. */
export const EXIT = { ok: 0, invalid: 1, usage: 2, internal: 3 } as const;

/** A failure caused by the user's input or environment: printed without a stack. */
export class UserError extends Error {
  readonly diagnostics: Diagnostic[];
  readonly exitCode: number;
  constructor(message: string, diagnostics: Diagnostic[] = [], exitCode: number = EXIT.invalid) {
    super(message);
    this.name = 'UserError';
    this.diagnostics = diagnostics;
    this.exitCode = exitCode;
  }
}

/** Wrong command line: exit 2. */
export class UsageError extends UserError {
  constructor(message: string) {
    super(message, [], EXIT.usage);
    this.name = 'UsageError';
  }
}

/** Rethrow with the step or output that failed in front ("applying overlay overlays/ssh: ..."). */
export function withContext(context: string, err: unknown): Error {
  if (err instanceof UserError) {
    const wrapped = new UserError(`${context}: ${err.message}`, err.diagnostics, err.exitCode);
    return wrapped;
  }
  if (err instanceof Error) {
    const wrapped = new Error(`${context}: ${err.message}`, { cause: err });
    return wrapped;
  }
  return new Error(`${context}: ${String(err)}`);
}

/** Key path `files[3].mode` from JSON pointer segments. */
export function keyPath(segments: readonly (string | number)[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number' || /^\d+$/.test(String(s))) out += `[${s}]`;
    else out += out ? `.${s}` : s;
  }
  return out;
}

/** Levenshtein distance, for "did you mean". */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  const limit = Math.max(2, Math.floor(word.length / 3));
  return best !== undefined && bestD <= limit ? best : undefined;
}
