// Drives Debian's chromium (headless, through playwright-core) against a running klingd's
// dashboard. Started by tests/integration/test_dashboard_browser.py, which runs klingd and
// fake-aimlapi and passes, in the environment:
//   DASHBOARD_URL   the URL `klingctl dashboard` printed (with the token)
//   KLINGCTL_BIN, KLINGD_SOCKET   to submit jobs the way a user would
//   FAKE_URL        fake-aimlapi's base URL (POST /__admin/config to make jobs fail)
//   KLINGD_TEST_OUT where the screenshot goes
// Exits 0 when every check passed; prints each step.
import { chromium } from 'playwright-core';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';

const url = process.env.DASHBOARD_URL;
const origin = new URL(url).origin;
const outDir = process.env.KLINGD_TEST_OUT || tmpdir();
mkdirSync(outDir, { recursive: true });

const step = (msg) => console.log(`[dashboard.test] ${msg}`);

function ctl(args, input) {
  return execFileSync(process.env.KLINGCTL_BIN, ['--socket', process.env.KLINGD_SOCKET, '--json', ...args],
    { input, encoding: 'utf8' });
}

function submit(prompts, label) {
  const lines = prompts.map((p) => JSON.stringify({
    request: { model: 'klingai/video-v3-pro-text-to-video', prompt: p, duration: 5 }, labels: { suite: label },
  })).join('\n') + '\n';
  const res = JSON.parse(ctl(['submit', '-f', '-'], lines));
  return { batch: res.batch, ids: res.jobs.map((j) => j.id) };
}

async function fakeConfig(change) {
  const r = await fetch(`${process.env.FAKE_URL}/__admin/config`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(change),
  });
  assert.equal(r.status, 200, `fake config ${JSON.stringify(change)}: ${r.status}`);
}

const rowIn = (page, id, state) => page.locator(`#jobs tr[data-id="${id}"][data-state="${state}"]`);

const profile = mkdtempSync(path.join(tmpdir(), 'klingd-chromium-'));
// A fresh profile each run (playwright wants it as userDataDir, not as --user-data-dir).
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1440, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
let page;
let closing = false; // set in the final block: held route answers may then find their page gone
try {
  page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`[browser console] ${m.text()}`); });
  page.on('response', (r) => { if (r.status() >= 400) console.log(`[browser] ${r.status()} ${r.url().replace(/token=\w+/, 'token=…')}`); });
  page.on('pageerror', (e) => console.log(`[browser error] ${e.message}`));

  step('without the token the page loads but its data is refused (401)');
  const apiRefused = await page.goto(origin + '/v1/status');
  assert.equal(apiRefused.status(), 401);
  const bare = await page.goto(origin + '/');
  assert.equal(bare.status(), 200);
  await page.locator('#live.bad').waitFor({ timeout: 10000 });

  step('with the token (in the fragment) the page loads and drops the token from its address');
  assert.ok(new URL(url).hash.startsWith('#token='), `the token is not in the fragment: ${url.replace(/[0-9a-f]{64}/, '…')}`);
  const token = new URL(url).hash.slice('#token='.length);
  await page.goto('about:blank'); // from origin + '/', a new fragment alone would not reload
  const ok = await page.goto(url);
  assert.equal(ok.status(), 200);
  await page.locator('#counts .count').first().waitFor();
  await page.locator('#live.ok').waitFor({ timeout: 10000 });
  assert.ok(!page.url().includes('token='), `token still in the address: ${page.url()}`);
  const cookies = await context.cookies();
  assert.ok(!cookies.some((c) => c.value.includes(token)), 'the token is in a cookie');

  step('another server on this host, visited by the same browser, receives no credential');
  // What any local user's web server on 127.0.0.1 sees when the browser visits it: with the
  // token in a cookie (cookies ignore ports) it came with every request.
  const seen = [];
  const other = http.createServer((req, res) => {
    seen.push({ url: req.url, headers: req.headers });
    if (req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<!doctype html><title>other</title><script>fetch("/probe", {credentials: "include"})' +
        '.then(r => r.text()).then(t => { document.title = "done"; });</script>');
    } else {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
    }
  });
  await new Promise((ok) => other.listen(0, '127.0.0.1', ok));
  try {
    const probe = await context.newPage();
    await probe.goto(`http://127.0.0.1:${other.address().port}/`);
    await probe.waitForFunction(() => document.title === 'done', null, { timeout: 10000 });
    await probe.close();
  } finally {
    await new Promise((ok) => other.close(ok));
  }
  assert.ok(seen.some((r) => r.url === '/probe'), `the probe page did not fetch: ${JSON.stringify(seen)}`);
  const leaked = seen.filter((r) => JSON.stringify(r).includes(token) || /klingd/i.test(r.headers.cookie || ''));
  // The message shows the cookies with the token's value hidden.
  assert.deepEqual(leaked.map((r) => r.url), [], `a klingd credential reached the other server: ${
    JSON.stringify(leaked.map((r) => r.headers.cookie || ''))}`.split(token).join('…'));
  // Slow answers: the summary views (counts, batches) are fetched at once but answered 1.5 s
  // later, so state changes keep arriving on the events stream while a fetch is out. The page
  // must fetch again after such an answer instead of keeping what it showed (a batch left at
  // 2/3 until the next event, which on a finished batch never comes).
  for (const route of ['/v1/status', '/v1/batches']) {
    await page.route((u) => u.pathname === route, async (r) => {
      const response = await r.fetch();
      await new Promise((ok) => setTimeout(ok, 1500));
      try {
        await r.fulfill({ response });
      } catch (e) {
        // Only at the end: the context closed while an answer was held ("Fetch response
        // has been disposed"). Anything else is a failure.
        if (!closing) throw e;
      }
    });
  }
  let navigations = 0;
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations += 1; });

  step('a batch submitted with klingctl appears and reaches completed without a reload');
  // Generations that take 1.2 s put their last state changes inside a held summary fetch.
  await fakeConfig({ generating_s: 1.2 });
  const batch = submit(['a red fox in snow', 'waves on a beach at dusk', 'a paper boat on a river'], 'browser');
  for (const id of batch.ids) {
    await rowIn(page, id, 'completed').waitFor({ timeout: 60000 });
  }
  await page.locator(`#batches .batch[data-batch="${batch.batch}"]`).waitFor();
  await page.waitForFunction((b) => {
    const el = document.querySelector(`#batches .batch[data-batch="${b}"] .num`);
    return el && el.textContent.startsWith('3/3');
  }, batch.batch, { timeout: 10000 });
  await page.waitForFunction(() => {
    const c = document.querySelector('#counts .count[data-state="completed"] b');
    return c && Number(c.textContent) >= 3;
  }, null, { timeout: 10000 });
  assert.equal(navigations, 0, 'the page reloaded');
  await fakeConfig({ generating_s: 0.1 });

  step('a finished video plays from its signed link: it reports a duration and currentTime advances');
  await page.locator(`#jobs tr[data-id="${batch.ids[0]}"]`).click();
  const video = page.locator('#detail video#player');
  await video.waitFor({ timeout: 10000 });
  const src = await video.getAttribute('src');
  assert.match(src, /^\/v1\/jobs\/[^/]+\/video\?exp=\d+&sig=[0-9a-f]{64}$/, `video src: ${src}`);
  assert.ok(!src.includes(token), 'the video link carries the token');
  const played = await video.evaluate(async (v) => {
    v.muted = true;
    if (v.readyState < 1) await new Promise((ok, bad) => { v.onloadedmetadata = ok; v.onerror = () => bad(new Error(`video error ${v.error && v.error.code}`)); });
    const duration = v.duration;
    await v.play();
    const t0 = performance.now();
    while (v.currentTime < 0.2 && performance.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
    return { duration, currentTime: v.currentTime, error: v.error && v.error.code };
  });
  step(`video: ${JSON.stringify(played)}`);
  assert.ok(played.duration > 0, `no duration: ${JSON.stringify(played)}`);
  assert.ok(played.currentTime > 0.1, `currentTime did not advance: ${JSON.stringify(played)}`);

  step('a failed job shows its error, and Retry brings it to completed');
  await fakeConfig({ failure_rate: 1 });
  const bad = submit(['this one fails first'], 'browser-retry');
  await rowIn(page, bad.ids[0], 'failed').waitFor({ timeout: 60000 });
  await fakeConfig({ failure_rate: 0 });
  await page.locator(`#jobs tr[data-id="${bad.ids[0]}"]`).click();
  await page.locator('#detail .error-box').waitFor();
  const retry = page.locator('#btn-retry');
  await retry.waitFor();
  assert.ok(await retry.isEnabled(), 'Retry is disabled on a failed job');
  await retry.click();
  await rowIn(page, bad.ids[0], 'completed').waitFor({ timeout: 60000 });
  await page.locator('#detail video#player').waitFor({ timeout: 10000 });
  assert.equal(navigations, 0, 'the page reloaded');

  step('filters: state=failed shows no rows now, label filter shows the retried job');
  await page.selectOption('#f-state', 'failed');
  await page.click('#filters button[type=submit]');
  await page.locator('#jobs tr.empty').waitFor();
  await page.click('#f-clear');
  await page.fill('#f-label', 'suite=browser-retry');
  await page.click('#filters button[type=submit]');
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll('#jobs tbody tr[data-id]');
    return rows.length === 1 && rows[0].dataset.id === id;
  }, bad.ids[0], { timeout: 10000 });
  await page.click('#f-clear');
  await page.locator(`#jobs tr[data-id="${batch.ids[0]}"]`).click();
  await page.locator('#detail video#player').waitFor();

  step('bulk retry in the batch view: the count first (nothing changes), then the action on confirm');
  await fakeConfig({ failure_rate: 1 });
  const bulk = submit(['bulk one fails', 'bulk two fails'], 'browser-bulk');
  for (const id of bulk.ids) await rowIn(page, id, 'failed').waitFor({ timeout: 60000 });
  await fakeConfig({ failure_rate: 0 });
  await page.locator(`#batches .batch[data-batch="${bulk.batch}"]`).click();
  await page.locator('#batch-actions #bulk-retry').click();
  await page.waitForFunction((b) => {
    const q = document.querySelector('#bulk-question');
    return q && q.textContent === `Retry 2 failed jobs of batch ${b}?`;
  }, bulk.batch, { timeout: 10000 });
  const states = () => JSON.parse(ctl(['ls', '--batch', bulk.batch])).jobs.map((j) => j.state);
  assert.deepEqual(states(), ['failed', 'failed'], 'asking for the count changed the jobs');
  await page.locator('#batch-actions').screenshot({ path: path.join(outDir, 'dashboard-bulk.png') });
  await page.locator('#bulk-confirm').click();
  for (const id of bulk.ids) await rowIn(page, id, 'completed').waitFor({ timeout: 60000 });
  assert.deepEqual(states(), ['completed', 'completed']);
  await page.locator('#batch-actions #bulk-retry').waitFor();
  assert.equal(navigations, 0, 'the page reloaded');
  await page.click('#f-clear');
  await page.locator(`#jobs tr[data-id="${batch.ids[0]}"]`).click();
  await page.locator('#detail video#player').waitFor();

  const shot = path.join(outDir, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  step(`screenshot: ${shot}`);
  step('all checks passed');
} catch (e) {
  if (page) {
    const shot = path.join(outDir, 'dashboard-failure.png');
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.log(`[dashboard.test] failure screenshot: ${shot}`);
  }
  console.error(e);
  process.exitCode = 1;
} finally {
  closing = true;
  if (page) await page.unrouteAll({ behavior: 'ignoreErrors' }).catch(() => {});
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
