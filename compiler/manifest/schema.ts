/**
 * JSON Schema validation (ajv, all errors at once) turned into located,
 * readable diagnostics: every ajv error is mapped back to the YAML line of
 * the value (or of the unknown key), with "did you mean" for near-misses.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { readFileSync } from 'node:fs';
import { didYouMean, keyPath, type Diagnostic, type Loc } from '../diagnostics.js';
import type { LNode } from './yaml.js';

const SCHEMAS = { image: 'image.schema.json', treecast: 'treecast.schema.json', nodes: 'nodes.schema.json' } as const;
type SchemaName = keyof typeof SCHEMAS;

export function loadSchema(name: SchemaName): Record<string, any> {
  return JSON.parse(readFileSync(new URL(`../../schemas/${SCHEMAS[name]}`, import.meta.url), 'utf8'));
}

let ajv: Ajv2020 | undefined;
const compiled = new Map<SchemaName, ValidateFunction>();

function validator(name: SchemaName): ValidateFunction {
  let v = compiled.get(name);
  if (!v) {
    // x-error is our annotation: the message shown when that schema fails.
    ajv ??= new Ajv2020({ allErrors: true, verbose: true, strict: true, strictRequired: false, allowUnionTypes: true }).addVocabulary(['x-error']);
    v = ajv.compile(loadSchema(name));
    compiled.set(name, v);
  }
  return v;
}

/** Validate a located tree; returns diagnostics (empty when valid). */
export function checkSchema(name: SchemaName, root: LNode, value: unknown = toPlain(root)): Diagnostic[] {
  const validate = validator(name);
  if (validate(value)) return [];
  return toDiagnostics(validate.errors ?? [], root);
}

function toPlain(node: LNode): unknown {
  if (node.kind === 'scalar') return node.value;
  if (node.kind === 'seq') return node.items.map(toPlain);
  return Object.fromEntries([...node.entries].map(([k, e]) => [k, toPlain(e.node)]));
}

function toDiagnostics(errors: ErrorObject[], root: LNode): Diagnostic[] {
  // A failed oneOf/anyOf also reports why each branch failed (propertyNames: why
  // the key failed): keep only the summary, which carries the x-error message.
  const unions = errors.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf' || e.keyword === 'propertyNames');
  const kept = errors.filter(
    (e) => !unions.some((u) => u !== e && e.schemaPath.startsWith(u.schemaPath + '/') && e.instancePath.startsWith(u.instancePath)),
  );
  // if/then failures duplicate the errors inside "then".
  const relevant = kept.filter((e) => e.keyword !== 'if');
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  for (const e of relevant) {
    const d = describe(e, root);
    const key = `${d.path}|${d.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(d);
    }
  }
  return out;
}

function segmentsOf(pointer: string): string[] {
  return pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** The node at a path in the located tree, if there is one. */
function nodeAt(root: LNode, segments: readonly string[]): LNode | undefined {
  let node: LNode | undefined = root;
  for (const seg of segments) {
    if (node?.kind === 'map') node = node.entries.get(seg)?.node;
    else if (node?.kind === 'seq') node = node.items[Number(seg)];
    else return undefined;
  }
  return node;
}

/** Location of a value (or of its key) in the located tree. */
export function locate(root: LNode, segments: readonly (string | number)[], which: 'value' | 'key' = 'value'): Loc {
  let node = root;
  let keyLoc: Loc | undefined;
  for (const seg of segments) {
    if (node.kind === 'map') {
      const e = node.entries.get(String(seg));
      if (!e) return node.loc;
      keyLoc = e.keyLoc;
      node = e.node;
    } else if (node.kind === 'seq') {
      const item = node.items[Number(seg)];
      if (!item) return node.loc;
      keyLoc = item.loc;
      node = item;
    } else return node.loc;
  }
  return which === 'key' && keyLoc ? keyLoc : node.loc;
}

function typeName(v: unknown): string {
  if (v === null) return 'null (an empty value)';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `a string`;
  return `${typeof v} ${JSON.stringify(v)}`;
}

function describe(e: ErrorObject, root: LNode): Diagnostic {
  const segs = segmentsOf(e.instancePath);
  const path = keyPath(segs);
  const custom = (e.parentSchema as Record<string, unknown> | undefined)?.['x-error'] as string | undefined;
  const lastKey = segs[segs.length - 1];
  switch (e.keyword) {
    case 'additionalProperties': {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      const allowed = Object.keys(((e.parentSchema as any)?.properties ?? {}) as object).filter((k) => k !== '$schema');
      const guess = didYouMean(extra, allowed);
      return {
        loc: locate(root, [...segs, extra], 'key'),
        path: keyPath([...segs, extra]),
        message: `unknown key "${extra}"` + (guess ? ` (did you mean "${guess}"?)` : ''),
        hint: guess ? undefined : `allowed keys here: ${allowed.join(', ')}`,
      };
    }
    case 'required': {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      return { loc: locate(root, segs), path, message: `missing required key "${missing}"` };
    }
    case 'false schema': {
      const source = nodeAt(root, [...segs.slice(0, -1), 'source']);
      const which = source?.kind === 'scalar' && typeof source.value === 'string' ? `base source "${source.value}"` : 'this base source';
      return { loc: locate(root, segs, 'key'), path, message: `key "${lastKey}" is not allowed here`, hint: `it does not apply to ${which}` };
    }
    case 'type': {
      const value = e.data;
      const want = (e.params as { type: string | string[] }).type;
      if (custom && (lastKey === 'mode' || /octal/.test(custom)) && typeof value === 'number') {
        return { loc: locate(root, segs), path, message: custom, hint: numberModeHint(value, nodeAt(root, segs)) };
      }
      return { loc: locate(root, segs), path, message: custom ?? `must be ${article(want)}, not ${typeName(value)}` };
    }
    case 'enum': {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map(String);
      const guess = typeof e.data === 'string' ? didYouMean(e.data, allowed) : undefined;
      return {
        loc: locate(root, segs),
        path,
        message: `must be one of ${allowed.map((a) => `"${a}"`).join(', ')}, not ${JSON.stringify(e.data)}` + (guess ? ` (did you mean "${guess}"?)` : ''),
      };
    }
    case 'minimum':
    case 'maximum':
      return { loc: locate(root, segs), path, message: `must be ${e.keyword === 'minimum' ? '>=' : '<='} ${(e.params as { limit: number }).limit}, not ${JSON.stringify(e.data)}` };
    case 'pattern':
    case 'oneOf':
    case 'anyOf':
      if (e.keyword !== 'pattern' && typeof e.data === 'number' && lastKey === 'mode') {
        return { loc: locate(root, segs), path, message: custom ?? 'invalid value', hint: numberModeHint(e.data as number, nodeAt(root, segs)) };
      }
      if (e.keyword === 'pattern' && lastKey === 'mode' && typeof e.data === 'string' && /^0?[0-9]{3,4}$/.test(e.data)) {
        return { loc: locate(root, segs), path, message: custom ?? 'invalid value', hint: 'octal digits are 0 to 7' };
      }
      return { loc: locate(root, segs), path, message: custom ?? (e.keyword === 'pattern' ? `${JSON.stringify(e.data)} does not match ${(e.params as { pattern: string }).pattern}` : 'matches none of the allowed forms') };
    case 'minLength':
      return { loc: locate(root, segs), path, message: 'must not be empty' };
    case 'propertyNames': {
      const name = (e.params as { propertyName?: string }).propertyName ?? '';
      return { loc: locate(root, [...segs, name], 'key'), path: keyPath([...segs, name]), message: `invalid key ${JSON.stringify(name)}`, hint: lastKey === 'metadata' ? "metadata keys are letters, digits, '.', '_' and '-', starting with a letter or digit" : lastKey === 'streams' ? "stream names are lower-case letters, digits, '.', '_' and '-', starting with a letter or digit (they end ref names and file names)" : undefined };
    }
    default:
      return { loc: locate(root, segs), path, message: custom ?? e.message ?? 'is invalid' };
  }
}

function article(t: string | string[]): string {
  const names = (Array.isArray(t) ? t : [t]).map((x) => (x === 'object' ? 'a map' : x === 'array' ? 'a list' : x === 'integer' ? 'a whole number' : `a ${x}`));
  return names.join(' or ');
}

function numberModeHint(n: number, node: LNode | undefined): string {
  // js-yaml (YAML 1.2 core schema) reads an unquoted 0644 as the decimal 644,
  // and 0o644 as 420: suggest the digits as written, never the decimal value.
  const written = node?.kind === 'scalar' && node.source ? node.source : n < 1000 ? `0${n}` : String(n);
  const digits = written.replace(/^0o/i, '');
  if (!/^[0-7]{1,5}$/.test(digits)) return `quote it — YAML reads ${written} as the number ${n}; write the octal digits as a string, e.g. mode: "0644"`;
  return `quote it — YAML reads ${written} as a number: mode: "${digits.replace(/^0(?=[0-7]{4})/, '').padStart(4, '0')}"`;
}
