/**
 * YAML -> a located tree: every value and every map key knows its line and
 * column. js-yaml has no AST, but its `listener` reports each node's open and
 * close positions in document order; we rebuild the node tree from those
 * events and pair it with the composed value.
 */
import yaml from 'js-yaml';
import { keyPath, type Diagnostic, type Loc } from '../diagnostics.js';

export type Scalar = string | number | boolean | null;

export type LNode =
  | { kind: 'scalar'; loc: Loc; value: Scalar; /** For numbers: the text as written (0644, 0o644), for hints. */ source?: string }
  | { kind: 'seq'; loc: Loc; items: LNode[] }
  | { kind: 'map'; loc: Loc; entries: Map<string, { keyLoc: Loc; node: LNode }> };

/** Manifests are small; these bound what a hostile pull request can make us do. */
export const LIMITS = {
  bytes: 1024 * 1024, // a 50 MB manifest is refused before it is read
  nodes: 100_000, // counts aliases expanded: a "billion laughs" stops here
  depth: 64,
  // Includes are counted each time they are merged, cached or not: merging is the
  // cost, and a few files that each include the next several times fan out exponentially.
  includeFiles: 64,
  includeBytes: 4 * 1024 * 1024,
};

/**
 * Keys that name JavaScript object machinery: `__proto__` assigned to a plain
 * object replaces its prototype, so settings hidden under it would take effect
 * while missing from schema checks, hashes and plan diffs. No manifest needs them.
 */
export const RESERVED_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

interface RawNode {
  start: number;
  end?: number;
  result: unknown;
  children: RawNode[];
  weight: number;
}

export type ParseResult = { ok: true; root: LNode } | { ok: false; diagnostics: Diagnostic[] };

/** Nothing but blank lines and comments: no YAML document at all. */
export function isBlankYaml(text: string): boolean {
  return text.split('\n').every((l) => /^\s*(#.*)?$/.test(l));
}

export function parseYaml(text: string, file: string): ParseResult {
  const at = (offset: number): Loc => locAt(text, offset, file);
  if (isBlankYaml(text)) {
    const message = text.trim() === '' ? 'file is empty' : 'file is empty (it has only comments)';
    return fail({ loc: { file, line: 1, col: 1 }, message, hint: 'an image manifest is a YAML map with at least a "name"' });
  }
  // Aliases are shared objects in js-yaml's result; weigh them by what they expand to.
  const weights = new WeakMap<object, number>();
  const stack: RawNode[] = [{ start: 0, result: undefined, children: [], weight: 0 }];
  let total = 0;
  let aliased = false;
  let value: unknown;
  try {
    value = yaml.load(text, {
      filename: file,
      schema: yaml.CORE_SCHEMA, // no !!js types, no timestamps turning into Date objects
      listener(event, state) {
        if (event === 'open') {
          stack.push({ start: state.position, result: undefined, children: [], weight: 1 });
          if (stack.length > LIMITS.depth + 2) throw new LimitError(`nesting deeper than ${LIMITS.depth} levels`, state.position);
          return;
        }
        const node = stack.pop()!;
        node.result = state.result;
        node.end = state.position;
        const obj = typeof node.result === 'object' && node.result !== null ? node.result : undefined;
        if (node.children.length === 0 && obj && weights.has(obj)) {
          node.weight = weights.get(obj)!; // an alias: it costs what its anchor expands to
          aliased = true;
        } else {
          node.weight = 1 + node.children.reduce((s, c) => s + c.weight, 0);
        }
        if (obj) weights.set(obj, node.weight);
        total += node.weight - node.children.reduce((s, c) => s + c.weight, 0);
        if (total > LIMITS.nodes) {
          throw new LimitError(aliased ? `expands to more than ${LIMITS.nodes} values (alias bomb?)` : `has more than ${LIMITS.nodes} values`, node.start);
        }
        stack[stack.length - 1]!.children.push(node);
      },
    });
  } catch (err) {
    if (err instanceof LimitError) {
      return fail({ loc: at(err.offset), message: `refused: document ${err.message}`, hint: 'manifests should not need deep nesting or repeated aliases' });
    }
    if (err instanceof yaml.YAMLException) return fail(yamlErrorDiagnostic(err, text, file));
    if (err instanceof RangeError) return fail({ loc: { file, line: 1, col: 1 }, message: 'refused: document too deeply nested' });
    throw err;
  }
  const top = stack[0]!.children;
  const rootRaw = collapse(top[top.length - 1]);
  if (value === undefined || rootRaw === undefined) {
    return fail({ loc: { file, line: 1, col: 1 }, message: 'file has no YAML document' });
  }
  const cycle = aliasCycle(rootRaw, new Set());
  if (cycle !== undefined) {
    return fail({ loc: at(skipBlank(text, cycle)), message: 'refused: this alias is inside the node its anchor names (a cycle)', hint: 'an alias may only repeat a node that is complete before it' });
  }
  const complexKeys: Diagnostic[] = [];
  const root = toLNode(rootRaw, value, text, file, complexKeys);
  const refused = [...complexKeys, ...reservedKeys(root)];
  if (refused.length) return { ok: false, diagnostics: refused };
  return { ok: true, root };
}

function reservedKeys(node: LNode, segs: (string | number)[] = [], out: Diagnostic[] = []): Diagnostic[] {
  if (node.kind === 'seq') node.items.forEach((n, i) => reservedKeys(n, [...segs, i], out));
  if (node.kind === 'map') {
    for (const [k, e] of node.entries) {
      if (RESERVED_KEYS.has(k)) {
        out.push({ loc: e.keyLoc, path: keyPath([...segs, k]), message: `key "${k}" is not allowed`, hint: '"__proto__", "constructor" and "prototype" are reserved: they would reach into the JavaScript object model' });
      } else reservedKeys(e.node, [...segs, k], out);
    }
  }
  return out;
}

/**
 * Offset of an alias that names a node it is inside of (`a: &x { b: *x }`),
 * if any: js-yaml registers the anchor before reading the node's content, so
 * the result is a cyclic object, and every walk over it (locating, plain(),
 * the schema check) recursed until the stack overflowed (found by the parser
 * fuzz). Aliases are the leaves whose result is an object; the walk is as
 * deep as the document's nesting, which LIMITS.depth bounds.
 */
function aliasCycle(node: RawNode, open: Set<unknown>): number | undefined {
  const obj = typeof node.result === 'object' && node.result !== null ? node.result : undefined;
  if (!obj) return undefined;
  if (node.children.length === 0) return open.has(obj) ? node.start : undefined;
  const added = !open.has(obj); // a wrapper has the same result as its one child
  if (added) open.add(obj);
  try {
    for (const c of node.children) {
      const found = aliasCycle(c, open);
      if (found !== undefined) return found;
    }
    return undefined;
  } finally {
    if (added) open.delete(obj);
  }
}

class LimitError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

function fail(d: Diagnostic): ParseResult {
  return { ok: false, diagnostics: [d] };
}

function yamlErrorDiagnostic(err: yaml.YAMLException, text: string, file: string): Diagnostic {
  const mark = err.mark as { line?: number; column?: number; position?: number } | undefined;
  // Located from the offset, like every other node: js-yaml's own line count also
  // breaks lines at a lone "\r" (found by the parser fuzz: line 5 of a one-line file),
  // and at the end of a file without a final newline it points one line past it.
  const loc: Loc =
    typeof mark?.position === 'number' ? locAt(text, Math.min(mark.position, text.length), file) : mark && typeof mark.line === 'number' ? { file, line: mark.line + 1, col: (mark.column ?? 0) + 1 } : { file, line: 1, col: 1 };
  const reason = err.reason || err.message;
  let hint: string | undefined;
  const lineText = text.split('\n')[loc.line - 1] ?? '';
  let message = `YAML syntax error: ${reason}`;
  if (/\t/.test(lineText.match(/^\s*/)?.[0] ?? '') || /tab/i.test(reason)) hint = 'YAML indentation must use spaces, not tabs';
  else if (/duplicated mapping key/.test(reason)) {
    // js-yaml points at the second occurrence of the key; name it.
    const key = typeof mark?.position === 'number' ? text.slice(mark.position).match(/^(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\n]|'')*)'|([^\n:#,{}[\]]*?))\s*:/) : null;
    const name = key ? (key[1] ?? key[2] ?? key[3]) : undefined;
    if (name) message += ` "${name}"`;
    hint = 'each key may appear once per map';
  } else if (/flow collection/.test(reason) && typeof mark?.position === 'number') {
    // The error shows up where js-yaml gave up, often lines after the "[" or "{" that was left open.
    const open = unclosedFlowOpener(text, mark.position);
    if (open !== undefined) {
      const o = locAt(text, open, file);
      hint = `inside the "${text[open]}" opened at line ${o.line}, column ${o.col}: is its closing "${text[open] === '[' ? ']' : '}'}" or a "," between items missing?`;
    }
  }
  return { loc, message, hint };
}

/** Offset of the innermost "[" or "{" still open at `end` (quoted strings and comments skipped), if any. */
function unclosedFlowOpener(text: string, end: number): number | undefined {
  const stack: number[] = [];
  let prev = '\n'; // last significant character: a bracket or quote only starts a node after one of these
  for (let i = 0; i < end && i < text.length; i++) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\r') continue;
    const startsNode = prev === '\n' || ':-,[{?'.includes(prev);
    if (c === '#' && (i === 0 || /\s/.test(text[i - 1]!))) {
      while (i + 1 < end && text[i + 1] !== '\n') i++;
      continue;
    }
    if ((c === '"' || c === "'") && startsNode) {
      for (i++; i < end && text[i] !== c; i++) if (c === '"' && text[i] === '\\') i++;
    } else if ((c === '[' || c === '{') && startsNode) stack.push(i);
    else if ((c === ']' || c === '}') && stack.length) stack.pop();
    prev = c;
  }
  return stack[stack.length - 1];
}

/** js-yaml sometimes wraps one node in another with the same result; keep the inner one. */
function collapse(n: RawNode | undefined): RawNode | undefined {
  while (n && n.children.length === 1 && n.children[0]!.result === n.result && typeof n.result === 'object' && n.result !== null) {
    n = n.children[0]!;
  }
  return n;
}

/** `complexKeys` collects keys that are lists or maps (`? [a, b]` or `? {a: b}`), refused: see below. */
function toLNode(raw: RawNode, value: unknown, text: string, file: string, complexKeys: Diagnostic[], nullLoc?: Loc): LNode {
  // An empty value (`key:` or a bare `-`) is best shown where its key or dash is.
  const loc = value === null && nullLoc ? nullLoc : locAt(text, skipBlank(text, raw.start), file);
  const isAlias = raw.children.length === 0;
  if (Array.isArray(value)) {
    // Empty items (a bare `-`) emit no node, so children are matched to items by value.
    let j = 0;
    const items = value.map((v) => {
      const child = isAlias ? undefined : collapse(raw.children[j]);
      if (child && Object.is(child.result, v)) {
        j++;
        return toLNode(child, v, text, file, complexKeys);
      }
      return located(v, loc);
    });
    return { kind: 'seq', loc, items };
  }
  if (typeof value === 'object' && value !== null) {
    const record = value as Record<string, unknown>;
    const entries = new Map<string, { keyLoc: Loc; node: LNode }>();
    for (let i = 0; !isAlias && i < raw.children.length; ) {
      const keyRaw = raw.children[i++]!;
      const key = String(keyRaw.result);
      const keyLoc = locAt(text, skipBlank(text, keyRaw.start), file);
      // js-yaml turns a list or map used as a key into a string ("a,b", "[object Object]"):
      // no manifest key is one, and the message would show that string (found by the parser fuzz).
      if (typeof keyRaw.result === 'object' && keyRaw.result !== null) {
        complexKeys.push({ loc: keyLoc, message: `a key must be a single value, not ${Array.isArray(keyRaw.result) ? 'a list' : 'a map'}`, hint: 'keys are plain names such as "packages"' });
      }
      const valueRaw = collapse(raw.children[i]);
      const hasValueNode = valueRaw !== undefined && Object.is(valueRaw.result, record[key]);
      if (hasValueNode) i++;
      if (!(key in record) || key === '<<' || entries.has(key)) continue;
      const node = hasValueNode ? toLNode(valueRaw, record[key], text, file, complexKeys, keyLoc) : located(record[key], keyLoc);
      entries.set(key, { keyLoc, node });
    }
    // Keys we could not place (merge keys `<<`, aliases) take the map's own location;
    // the map keeps document order.
    const ordered = new Map<string, { keyLoc: Loc; node: LNode }>();
    for (const [k, v] of Object.entries(record)) ordered.set(k, entries.get(k) ?? { keyLoc: loc, node: located(v, loc) });
    return { kind: 'map', loc, entries: ordered };
  }
  if (typeof value === 'number' && raw.end !== undefined) {
    return { kind: 'scalar', loc, value, source: text.slice(skipBlank(text, raw.start), raw.end).trim() };
  }
  return { kind: 'scalar', loc, value: value as Scalar };
}

/** A whole subtree placed at one location (from an alias or merge key). */
export function located(value: unknown, loc: Loc): LNode {
  if (Array.isArray(value)) return { kind: 'seq', loc, items: value.map((v) => located(v, loc)) };
  if (typeof value === 'object' && value !== null) {
    return { kind: 'map', loc, entries: new Map(Object.entries(value).map(([k, v]) => [k, { keyLoc: loc, node: located(v, loc) }])) };
  }
  return { kind: 'scalar', loc, value: value as Scalar };
}

function skipBlank(text: string, pos: number): number {
  for (;;) {
    const c = text[pos];
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') pos++;
    else if (c === '#') {
      while (pos < text.length && text[pos] !== '\n') pos++;
    } else if (c === '-' && (text[pos + 1] === ' ' || text[pos + 1] === '\n') && lineIsBlankBefore(text, pos)) pos++;
    else return pos;
  }
}

function lineIsBlankBefore(text: string, pos: number): boolean {
  for (let i = pos - 1; i >= 0 && text[i] !== '\n'; i--) if (text[i] !== ' ' && text[i] !== '-') return false;
  return true;
}

// Offsets of line starts of the last text located: one scan per document, not
// one per node (that was quadratic: seconds for a few hundred KB).
let lineCache: { text: string; starts: number[] } | undefined;

function lineStarts(text: string): number[] {
  if (lineCache?.text === text) return lineCache.starts;
  const starts = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  lineCache = { text, starts };
  return starts;
}

export function locAt(text: string, offset: number, file: string): Loc {
  const starts = lineStarts(text);
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { file, line: lo + 1, col: offset - starts[lo]! + 1 };
}

/** The plain JS value of a located tree. */
export function plain(node: LNode): unknown {
  switch (node.kind) {
    case 'scalar':
      return node.value;
    case 'seq':
      return node.items.map(plain);
    case 'map': {
      const out: Record<string, unknown> = {};
      // Never `out[k] = ...`: for "__proto__" that assignment sets the prototype instead of a key.
      for (const [k, e] of node.entries) Object.defineProperty(out, k, { value: plain(e.node), enumerable: true, writable: true, configurable: true });
      return out;
    }
  }
}
