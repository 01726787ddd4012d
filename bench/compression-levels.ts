/**
 * zstd levels for the two compressed outputs: time and size of mksquashfs
 * (-comp zstd -Xcompression-level N) and of tar | zstd -N, with the exact
 * argv treecast uses (mksquashfsArgs, tarArgs, compressArgs), on one tree.
 * The table goes into docs/outputs.md; the default levels come from it.
 * It also checks that zstd -T1, -T2 and -T0 give the same bytes (the
 * tarball runs zstd multi-threaded and must stay reproducible).
 *
 *   npx tsx bench/compression-levels.ts [TREE] [LEVELS, e.g. 1,3,6,9,12,15,19]
 *
 * Without TREE it builds a ~200 MiB sample like a Debian image from host
 * files (ELF programs and libraries, Perl/Python modules, docs), in a temp dir.
 * It takes CPU for minutes: run it on an otherwise idle machine.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { quoteArgv } from '../compiler/exec.js';
import type { ImageManifest } from '../compiler/manifest/types.js';
import { mksquashfsArgs } from '../compiler/outputs/squashfs.js';
import { compressArgs, tarArgs } from '../compiler/outputs/tarball.js';

const SAMPLE_BYTES = 200 * 1024 * 1024;
/** Where the sample comes from, and each source's share: roughly what a small Debian image holds. */
const SOURCES: [string, number][] = [
  ['/usr/bin', 0.25],
  ['/usr/lib/x86_64-linux-gnu', 0.35],
  ['/usr/share/perl', 0.1],
  ['/usr/lib/python3', 0.15],
  ['/usr/share', 0.15],
];
const EPOCH = 1_700_000_000;
const MiB = 1024 * 1024;

/** Copy files from `src` in sorted order into `dest/<src>` until `budget` bytes. */
function copySome(src: string, dest: string, budget: number): number {
  let used = 0;
  const walk = (rel: string): void => {
    let names: string[];
    try {
      names = fs.readdirSync(path.join(src, rel)).sort();
    } catch {
      return;
    }
    for (const n of names) {
      if (used >= budget) return;
      const r = path.join(rel, n);
      const from = path.join(src, r);
      const to = path.join(dest, src, r);
      const st = fs.lstatSync(from);
      if (st.isDirectory()) {
        fs.mkdirSync(to, { recursive: true });
        walk(r);
      } else if (st.isSymbolicLink()) {
        fs.mkdirSync(path.dirname(to), { recursive: true });
        if (!fs.existsSync(to)) fs.symlinkSync(fs.readlinkSync(from), to);
      } else if (st.isFile() && !fs.existsSync(to)) {
        fs.mkdirSync(path.dirname(to), { recursive: true });
        fs.copyFileSync(from, to);
        used += st.size;
      }
    }
  };
  walk('');
  return used;
}

function sample(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-levels-'));
  let total = 0;
  for (const [src, share] of SOURCES) total += copySome(src, dir, SAMPLE_BYTES * share);
  console.log(`sample: ${(total / MiB).toFixed(0)} MiB of host files in ${dir}`);
  return dir;
}

function treeBytes(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) (bytes += fs.statSync(p).size), files++;
    }
  };
  walk(dir);
  return { bytes, files };
}

function timeIt(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return (performance.now() - t0) / 1000;
}

function sh(script: string): void {
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', script], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`failed (${r.status}): ${script}`);
}

const fileSha = (p: string) => createHash('sha256').update(fs.readFileSync(p)).digest('hex');

function main(): void {
  const given = process.argv[2];
  const levels = (process.argv[3] ?? '1,3,6,9,12,15,19').split(',').map(Number);
  const tree = given ?? sample();
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-levels-out-'));
  try {
    const { bytes, files } = treeBytes(tree);
    const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
    console.log(`tree: ${tree}: ${(bytes / MiB).toFixed(0)} MiB in ${files} files`);
    console.log(`machine: ${os.cpus().length} x ${cpu}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}; ${execFileSync('zstd', ['--version']).toString().trim()}; ${execFileSync('mksquashfs', ['-version']).toString().split('\n')[0]}`);
    console.log(`date: ${new Date().toISOString()}\n`);

    // Warm the page cache so the first row does not pay for reading the tree.
    sh(`${quoteArgv(['tar', ...tarArgs(tree, '-', EPOCH)])} > /dev/null`);

    const rows: { level: number; sqS: number; sqB: number; tarS: number; tarB: number }[] = [];
    for (const level of levels) {
      const m = { outputs: { squashfs: { compression: 'zstd', 'compression-level': level }, tarball: { compression: 'zstd', 'compression-level': level } } } as unknown as ImageManifest;
      const sq = path.join(out, `l${level}.squashfs`);
      const sqS = timeIt(() => sh(quoteArgv(['mksquashfs', ...mksquashfsArgs(m, tree, sq, EPOCH)])));
      const tz = path.join(out, `l${level}.tar.zst`);
      const [zcmd, zargs] = compressArgs('zstd', level);
      const tarS = timeIt(() => sh(`${quoteArgv(['tar', ...tarArgs(tree, '-', EPOCH)])} | ${quoteArgv([zcmd, ...zargs])} > ${quoteArgv([tz])}`));
      const row = { level, sqS, sqB: fs.statSync(sq).size, tarS, tarB: fs.statSync(tz).size };
      rows.push(row);
      console.log(`  level ${level}: squashfs ${sqS.toFixed(1)} s ${(row.sqB / MiB).toFixed(1)} MiB; tar|zstd ${tarS.toFixed(1)} s ${(row.tarB / MiB).toFixed(1)} MiB`);
      fs.rmSync(sq);
      fs.rmSync(tz);
    }

    const base = rows.find((r) => r.level === 3) ?? rows[0]!;
    const pct = (v: number, b: number) => `${v >= b ? '+' : ''}${(((v - b) / b) * 100).toFixed(1)}%`;
    console.log(`\n| level | squashfs time | squashfs size | vs ${base.level} | tar\\|zstd time | tarball size | vs ${base.level} |`);
    console.log('|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      console.log(
        `| ${r.level} | ${r.sqS.toFixed(1)} s (${(r.sqS / base.sqS).toFixed(1)}x) | ${(r.sqB / MiB).toFixed(1)} MiB (${((r.sqB / bytes) * 100).toFixed(1)}%) | ${pct(r.sqB, base.sqB)} | ${r.tarS.toFixed(1)} s (${(r.tarS / base.tarS).toFixed(1)}x) | ${(r.tarB / MiB).toFixed(1)} MiB (${((r.tarB / bytes) * 100).toFixed(1)}%) | ${pct(r.tarB, base.tarB)} |`,
      );
    }

    // zstd multi-threaded output must not depend on the worker count (tarballs are compared across machines).
    const tar = path.join(out, 'sample.tar');
    sh(`${quoteArgv(['tar', ...tarArgs(tree, '-', EPOCH)])} > ${quoteArgv([tar])}`);
    const sums = ['-T1', '-T2', '-T0'].map((t) => {
      const f = path.join(out, `t${t}.zst`);
      sh(`zstd -q ${t} -3 -c ${quoteArgv([tar])} > ${quoteArgv([f])}`);
      return `${t} ${fileSha(f).slice(0, 16)}`;
    });
    console.log(`\nzstd -3 of the same tar with ${sums.join(', ')}: ${new Set(sums.map((s) => s.split(' ')[1])).size === 1 ? 'identical' : 'DIFFERENT'}`);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
    if (!given) fs.rmSync(tree, { recursive: true, force: true });
  }
}

main();
