/**
 * index.html as people see it: published by `treecast publish` (two images,
 * two versions), served by compiler/serve on 127.0.0.1, rendered by the
 * system's headless Chromium through playwright-core. Assertions are on the
 * rendered DOM; a screenshot goes to test-artifacts/index.png.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../compiler/serve/index.js';
import { PROJECT_ROOT } from './helpers/cli.js';
import { HOST, HOST_REF, NETBOOT, NETBOOT_REF, PublishFixture, type BuiltImage } from './helpers/publish-fixture.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SCREENSHOT = path.join(PROJECT_ROOT, 'test-artifacts/index.png');

describe('index.html in a real browser', () => {
  let f: PublishFixture;
  let server: RunningServer;
  let pub: string;
  let v1: Record<string, BuiltImage>;
  let v2: Record<string, BuiltImage>;
  let userDataDir: string;
  let context: BrowserContext;
  let page: Page;
  const requests: string[] = [];
  /** Requests the page tried to make outside the test server (aborted). */
  const blocked: string[] = [];

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install the Debian package chromium (never a downloaded browser)`);
    f = await PublishFixture.create('index-page');
    pub = f.dir('public');
    server = await startServer({ dir: pub, host: '127.0.0.1', port: 0, log: (l) => requests.push(l) });
    f.setConfig({ url: server.url });
    // One file that is not world-readable, so the page has a list to show.
    fs.writeFileSync(path.join(f.spec, 'tree/etc/app.key'), 'not a real key\n');
    fs.chmodSync(path.join(f.spec, 'tree/etc/app.key'), 0o600);
    await f.commit('publish at the test server');
    v1 = await f.build();
    await f.mustPublish(pub);
    f.editTree('etc/motd', 'treecast fixture v2\n');
    await f.commit('v2: new motd');
    v2 = await f.build();
    await f.mustPublish(pub);

    userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'treecast-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1280, height: 900 } });
    // Everything the page loads must come from the test server.
    await context.route('**/*', (route) => {
      if (route.request().url().startsWith(`${server.url}/`)) return route.continue();
      blocked.push(route.request().url());
      return route.abort();
    });
    page = await context.newPage();
    const res = await page.goto(`${server.url}/index.html`);
    expect(res?.status()).toBe(200);
  });

  afterAll(async () => {
    await context?.close();
    if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
    await server?.close();
    await f?.cleanup();
  });

  it('has one section per image (data-image), in name order, with its ref', async () => {
    expect(await page.title()).toBe('treecast images');
    const names = await page.locator('section[data-image]').evaluateAll((els) => els.map((e) => e.getAttribute('data-image')));
    expect(names).toEqual([HOST, NETBOOT]);
    await expect(page.locator(`section[data-image="${HOST}"] h2`).textContent()).resolves.toContain(HOST_REF);
    await expect(page.locator(`section[data-image="${NETBOOT}"] h2`).textContent()).resolves.toContain(NETBOOT_REF);
  });

  it('lists the versions as rows (data-version), newest first, with the latest badge on the newest only', async () => {
    for (const name of [HOST, NETBOOT]) {
      const section = page.locator(`section[data-image="${name}"]`);
      const rows = section.locator('tr[data-version]');
      expect(await rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-version')))).toEqual([v2[name]!.version, v1[name]!.version]);
      const newest = section.locator(`tr[data-version="${v2[name]!.version}"]`);
      const oldest = section.locator(`tr[data-version="${v1[name]!.version}"]`);
      expect(await newest.locator('.badge').count()).toBe(1);
      expect((await newest.locator('.badge').innerText()).trim()).toBe('latest');
      expect(await newest.locator('.badge').isVisible()).toBe(true);
      expect(await oldest.locator('.badge').count()).toBe(0);
      expect((await section.locator('.latest').innerText()).trim()).toBe(v2[name]!.version);
      // Commit column shows the short id with the full one on hover.
      expect(await newest.locator('code').first().getAttribute('title')).toBe(v2[name]!.commit);
      // Package changes: tree images have none, and the first version says so.
      expect(await newest.innerText()).toContain('no package changes');
      expect(await oldest.innerText()).toContain('first published version');
    }
  });

  it('shows a copyable `ostree remote add` line with the repository URL', async () => {
    for (const [name, ref] of [
      [HOST, HOST_REF],
      [NETBOOT, NETBOOT_REF],
    ] as const) {
      const block = page.locator(`section[data-image="${name}"] pre.copy`).first();
      expect(await block.isVisible()).toBe(true);
      const text = await block.innerText();
      const lines = text.split('\n');
      expect(lines).toContain(`ostree remote add --no-gpg-verify treecast ${server.url}/repo ${ref}`);
      expect(lines.some((l) => l.startsWith(`ostree admin deploy --os=${name} treecast:${ref}`))).toBe(true);
      // Selecting the block gives the exact command (what a person copies).
      const selected = await block.evaluate((el) => {
        const range = document.createRange();
        range.selectNodeContents(el);
        const sel = window.getSelection()!;
        sel.removeAllRanges();
        sel.addRange(range);
        return sel.toString();
      });
      expect(selected).toContain(`ostree remote add --no-gpg-verify treecast ${server.url}/repo ${ref}`);
    }
  });

  it('links the kickstart of every image and the iPXE script of the diskless one, and they are served', async () => {
    for (const name of [HOST, NETBOOT]) {
      const section = page.locator(`section[data-image="${name}"]`);
      const ks = section.getByRole('link', { name: 'kickstart', exact: true });
      expect(await ks.getAttribute('href')).toBe(`${server.url}/kickstart/${name}.ks`);
      const ipxe = section.getByRole('link', { name: 'iPXE script', exact: true });
      if (name === NETBOOT) {
        expect(await ipxe.getAttribute('href')).toBe(`${server.url}/boot/${NETBOOT}.ipxe`);
        expect(await section.locator('pre.copy').nth(1).innerText()).toBe(`chain ${server.url}/boot/${NETBOOT}.ipxe`);
      } else {
        expect(await ipxe.count()).toBe(0);
      }
    }
    // Follow the links the page shows, through the browser.
    const hrefs = await page.locator('section[data-image] a').evaluateAll((els) => els.map((e) => (e as HTMLAnchorElement).href));
    expect(hrefs.length).toBeGreaterThan(4);
    for (const href of new Set(hrefs)) {
      const r = await page.request.get(href);
      expect(r.status(), href).toBe(200);
    }
    const ks = await (await page.request.get(`${server.url}/kickstart/${HOST}.ks`)).text();
    expect(ks).toMatch(new RegExp(`^ostreesetup --osname=${HOST} .*--ref=${HOST_REF}`, 'm'));
  });

  it('shows per version how many files are not world-readable, with the list behind a <details>', async () => {
    for (const name of [HOST, NETBOOT]) {
      for (const built of [v1[name]!, v2[name]!]) {
        const manifest = JSON.parse(fs.readFileSync(path.join(pub, 'images', name, built.version, 'MANIFEST.json'), 'utf8')) as { privateFiles: { path: string; mode: string; owner: number; group: number }[] };
        const n = manifest.privateFiles.length;
        expect(manifest.privateFiles.map((p) => p.path)).toContain('/etc/app.key');
        const row = page.locator(`section[data-image="${name}"] tr[data-version="${built.version}"]`);
        const details = row.locator('details.private');
        expect(await details.getAttribute('data-count')).toBe(String(n));
        expect((await details.locator('summary').innerText()).trim()).toBe(`${n} ${n === 1 ? 'file' : 'files'} not world-readable`);
        expect(await details.locator('summary').isVisible()).toBe(true);
        // Closed until a person opens it; then every entry is there.
        const items = details.locator('li');
        expect(await items.first().isVisible()).toBe(false);
        await details.locator('summary').click();
        expect(await items.first().isVisible()).toBe(true);
        const key = manifest.privateFiles.find((p) => p.path === '/etc/app.key')!;
        expect(await items.allInnerTexts()).toContain(`${key.mode} ${key.owner}:${key.group} /etc/app.key`);
        expect(await items.count()).toBe(n);
      }
    }
  });

  it('renders legibly (screenshot in test-artifacts/index.png)', async () => {
    const box = await page.locator(`section[data-image="${HOST}"] table`).boundingBox();
    expect(box!.width).toBeGreaterThan(600);
    await page.evaluate(() => window.getSelection()?.removeAllRanges());
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    const png = fs.readFileSync(SCREENSHOT);
    expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
    expect(png.length).toBeGreaterThan(10_000);
    // The page is self-contained: no external fonts, scripts or trackers were even tried.
    expect(blocked).toEqual([]);
    expect(requests.some((l) => /"GET \/index\.html" 200 /.test(l))).toBe(true);
  });
});
