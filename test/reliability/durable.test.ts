/**
 * Power loss, simulated at the system-call level: every rename that publishes
 * something must come after an fsync of the data it publishes, and be
 * followed by an fsync of the directory that holds the new name. The real
 * node:fs does the work; the mock only records which path each fd belongs to
 * and the order of open/fsync/rename calls.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';

type Event = { op: 'fsync'; path: string } | { op: 'rename'; from: string; to: string };
const events: Event[] = [];
const fdPaths = new Map<number, string>();

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const wrapped = {
    ...real,
    openSync: (p: fs.PathLike, ...rest: unknown[]) => {
      const fd = (real.openSync as (...a: unknown[]) => number)(p, ...rest);
      fdPaths.set(fd, String(p));
      return fd;
    },
    fsyncSync: (fd: number) => {
      real.fsyncSync(fd);
      events.push({ op: 'fsync', path: fdPaths.get(fd) ?? `fd ${fd}` });
    },
    renameSync: (from: fs.PathLike, to: fs.PathLike) => {
      real.renameSync(from, to);
      events.push({ op: 'rename', from: String(from), to: String(to) });
    },
  };
  return { ...wrapped, default: wrapped };
});

const { writeFileDurable, replaceSymlinkDurable } = await import('../../compiler/durable.js');
const { swapIntoPlace } = await import('../../compiler/compile/emit.js');
const { writeAtomic } = await import('../../compiler/publish/publish.js');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-durable-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeEach(() => {
  events.length = 0;
});

const fsyncs = (from = 0, to = events.length) => events.slice(from, to).filter((e) => e.op === 'fsync').map((e) => (e as { path: string }).path);

/** For each rename: the source (or every file under it) was fsynced before, the target's directory after. */
function expectDurableRenames(): void {
  const renames = events.map((e, i) => [e, i] as const).filter(([e]) => e.op === 'rename');
  expect(renames.length).toBeGreaterThan(0);
  for (const [e, i] of renames) {
    const r = e as { from: string; to: string };
    const before = fsyncs(0, i);
    expect(before.some((p) => p === r.from || p.startsWith(r.from + path.sep)), `${r.from} synced before its rename`).toBe(true);
    expect(fsyncs(i + 1), `${path.dirname(r.to)} synced after the rename`).toContain(path.dirname(r.to));
  }
}

describe('durable publishing: fsync before every rename that publishes, the directory after', () => {
  it('writeFileDurable and publish.ts writeAtomic (index.json, kickstarts, boot scripts)', () => {
    writeFileDurable(path.join(tmp, 'index.json'), '{"images":[]}\n');
    writeAtomic(path.join(tmp, 'kickstart', 'edge-host.ks'), 'ostreesetup ...\n');
    expectDurableRenames();
    expect(fs.readFileSync(path.join(tmp, 'index.json'), 'utf8')).toBe('{"images":[]}\n');
    expect(fs.readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('swapIntoPlace (version directories, emit and publish): every file of the staging dir, then the dir, then the parent', () => {
    const staging = path.join(tmp, '.staging-1.0.1-x');
    fs.mkdirSync(staging);
    for (const f of ['rootfs.squashfs', 'MANIFEST.json', 'SHA256SUMS']) fs.writeFileSync(path.join(staging, f), `${f}\n`);
    swapIntoPlace(staging, path.join(tmp, '1.0.1'));
    const renameAt = events.findIndex((e) => e.op === 'rename');
    for (const f of ['rootfs.squashfs', 'MANIFEST.json', 'SHA256SUMS']) expect(fsyncs(0, renameAt)).toContain(path.join(staging, f));
    expect(fsyncs(0, renameAt)).toContain(staging);
    expectDurableRenames();
    // Replacing an existing version: moved aside, the new one renamed in durably.
    events.length = 0;
    fs.mkdirSync(staging);
    fs.writeFileSync(path.join(staging, 'MANIFEST.json'), 'v2\n');
    swapIntoPlace(staging, path.join(tmp, '1.0.1'));
    expect(fs.readFileSync(path.join(tmp, '1.0.1', 'MANIFEST.json'), 'utf8')).toBe('v2\n');
    const last = events.filter((e) => e.op === 'rename').pop()!;
    expect(last).toEqual({ op: 'rename', from: staging, to: path.join(tmp, '1.0.1') });
    expect(fsyncs(events.lastIndexOf(last))).toContain(tmp);
  });

  it('replaceSymlinkDurable (images/<name>/latest)', () => {
    replaceSymlinkDurable(path.join(tmp, 'latest'), '1.0.1');
    replaceSymlinkDurable(path.join(tmp, 'latest'), '1.0.2');
    expect(fs.readlinkSync(path.join(tmp, 'latest'))).toBe('1.0.2');
    for (const e of events.filter((x) => x.op === 'rename')) {
      const r = e as { to: string };
      expect(fsyncs(events.indexOf(e) + 1)).toContain(path.dirname(r.to));
    }
  });
});
