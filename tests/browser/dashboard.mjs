#!/usr/bin/env node
// Browser test of the tracer-hub dashboard: headless Chromium through
// playwright-core, against a running hub.
//
//   HUB_URL=http://127.0.0.1:8080 HUB_PASSWORD=... SCREENSHOT_DIR=out/shots \
//   EXPECT_USER=alice EXPECT_PATH=/probe-123 [EXPECT_BREAK_STREAM=web2] \
//   node tests/browser/dashboard.mjs
//
// Prints READY_FOR_LIVE on stdout once the live view is connected, then waits
// for one line on stdin (the caller makes a request to EXPECT_PATH meanwhile)
// and checks that the live view shows it within LIVE_TIMEOUT_MS (10 s).
// Optional: CHROMIUM (default /usr/bin/chromium), TEST_TIMEOUT_MS (180 s).
// Exits 0 when every step passed, 1 with "FAIL: <step>: <why>" otherwise.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const env = (name, required = true) => {
  const v = process.env[name];
  if (required && !v) fail('setup', `environment variable ${name} is not set`);
  return v;
};

function fail(step, why) {
  console.error(`FAIL: ${step}: ${why}`);
  process.exit(1);
}

const HUB_URL = env('HUB_URL').replace(/\/+$/, '');
const HUB_PASSWORD = env('HUB_PASSWORD');
const SCREENSHOT_DIR = env('SCREENSHOT_DIR');
const EXPECT_USER = env('EXPECT_USER');
const EXPECT_PATH = env('EXPECT_PATH');
const EXPECT_BREAK_STREAM = env('EXPECT_BREAK_STREAM', false);
const LIVE_TIMEOUT_MS = Number(process.env.LIVE_TIMEOUT_MS || 10000);
const TEST_TIMEOUT_MS = Number(process.env.TEST_TIMEOUT_MS || 180000);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });

let current = 'setup';
const passed = [];
async function step(name, fn) {
  current = name;
  await fn();
  passed.push(name);
  console.log(`ok - ${name}`);
}

/** Resolves with the next line on stdin (or when stdin ends). */
function nextStdinLine() {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin });
    let done = false;
    const finish = (how) => { if (!done) { done = true; rl.close(); resolve(how); } };
    rl.once('line', () => finish('line'));
    rl.once('close', () => finish('eof'));
  });
}

const watchdog = setTimeout(() => fail(current, `the whole test took longer than ${TEST_TIMEOUT_MS} ms`), TEST_TIMEOUT_MS);

let browser;
const problems = []; // script errors and CSP violations seen in the page

async function shot(page, name) {
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

async function route(page, hash) {
  await page.goto(`${HUB_URL}/${hash}`);
  // The view is done when its loading text has gone.
  await page.locator('main .view').waitFor();
  await page.waitForFunction(() => !document.querySelector('main .loading'), null, { timeout: 15000 });
  const err = page.locator('main .error');
  if (await err.count()) throw new Error(`the view shows an error: ${await err.first().textContent()}`);
}

async function main() {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });

  await step('wrong password is refused', async () => {
    await page.goto(`${HUB_URL}/login`);
    await page.getByLabel('Password').fill(`${HUB_PASSWORD}-wrong`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.locator('#login-error');
    await alert.waitFor({ state: 'visible' });
    const text = (await alert.textContent()).trim();
    if (!text) throw new Error('the error box is empty');
    if (new URL(page.url()).pathname !== '/login') throw new Error(`left the login page for ${page.url()}`);
    await shot(page, '01-login-refused');
  });

  await step('log in', async () => {
    await page.getByLabel('Password').fill(HUB_PASSWORD);
    await Promise.all([
      page.waitForURL((u) => u.pathname === '/', { timeout: 15000 }),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
  });

  await step('overview shows a chart and totals', async () => {
    await route(page, '#/');
    await page.locator('.chart canvas').first().waitFor();
    const totals = await page.locator('.totals .total').allTextContents();
    for (const label of ['Requests', 'Failures', 'Users', 'Clients', 'Hosts', 'Sensor losses']) {
      if (!totals.some((t) => t.startsWith(label))) throw new Error(`no "${label}" total (saw: ${totals.join(' | ')})`);
    }
    const req = await page.locator('.total-requests .total-value').textContent();
    if (!/^\d[\d,]*$/.test(req.trim())) throw new Error(`requests total is not a number: "${req}"`);
    await shot(page, '02-overview');
  });

  await step('live view shows the new request', async () => {
    await route(page, '#/live');
    await page.locator('main table.records').waitFor();
    await page.locator('main .live-state[data-state="open"]').waitFor({ timeout: 15000 })
      .catch(() => { throw new Error('the live stream (/api/live) did not connect within 15 s'); });
    console.log('READY_FOR_LIVE');
    const how = await nextStdinLine();
    if (how === 'eof') console.log('# stdin ended without a line; checking the live view anyway');
    const row = page.locator('main table.records tbody td.c-path', { hasText: EXPECT_PATH });
    try {
      await row.first().waitFor({ timeout: LIVE_TIMEOUT_MS });
    } catch {
      const seen = (await page.locator('main table.records tbody td.c-path').allTextContents()).slice(0, 10);
      throw new Error(`${EXPECT_PATH} did not appear within ${LIVE_TIMEOUT_MS} ms (latest paths: ${seen.join(', ') || 'none'})`);
    }
    await shot(page, '03-live');
  });

  await step(`search by user ${EXPECT_USER} shows only their requests`, async () => {
    await route(page, '#/search');
    await page.getByLabel('User', { exact: true }).fill(EXPECT_USER);
    await page.getByLabel('User', { exact: true }).press('Enter');
    await page.waitForURL((u) => new URLSearchParams(u.hash.split('?')[1] || '').get('user') === EXPECT_USER);
    await page.waitForFunction(() => !document.querySelector('main .loading') && document.querySelector('main #results-h'));
    const users = await page.locator('main table.records tbody td.c-user').allTextContents();
    if (!users.length) throw new Error(`no rows for user ${EXPECT_USER}`);
    const other = users.filter((u) => u.trim() !== EXPECT_USER);
    if (other.length) throw new Error(`rows of other users: ${[...new Set(other)].join(', ')}`);
    await shot(page, '04-search-user');
  });

  await step('the first record shows its chain status', async () => {
    await Promise.all([
      page.waitForURL((u) => u.hash.startsWith('#/record/')),
      page.locator('main table.records tbody th.c-ts a').first().click(),
    ]);
    await page.waitForFunction(() => !document.querySelector('main .loading'));
    const chain = page.locator('main .chain');
    await chain.waitFor();
    const text = (await chain.textContent()).trim();
    if (!/^(linked|break|gap|unverified)\b/.test(text)) throw new Error(`unexpected chain status text "${text}"`);
    const fields = await page.locator('main table.kv tbody th').count();
    if (fields < 5) throw new Error(`only ${fields} fields shown`);
    await shot(page, '05-record');
  });

  await step('integrity page', async () => {
    await route(page, '#/integrity');
    await page.locator('main table caption', { hasText: 'Streams' }).waitFor();
    if (EXPECT_BREAK_STREAM) {
      const rows = page.locator(`[id="breaks-${EXPECT_BREAK_STREAM}"]`).locator('xpath=ancestor::section[1]').locator('table.breaks tbody tr.row-bad');
      if (!(await rows.count())) throw new Error(`no break shown for stream ${EXPECT_BREAK_STREAM}`);
      const badge = await page.locator(`[id="stream-${EXPECT_BREAK_STREAM}"] .badge`).first().textContent();
      if (badge.trim() !== 'broken') throw new Error(`stream ${EXPECT_BREAK_STREAM} is marked "${badge}", not "broken"`);
    }
    await shot(page, '06-integrity');
  });

  await step('other views render', async () => {
    for (const [hash, name] of [['#/endpoints', '07-endpoints'], ['#/users', '08-users'], [`#/user/${encodeURIComponent(EXPECT_USER)}`, '09-user'], ['#/clients', '10-clients'], ['#/alerts', '11-alerts']]) {
      await route(page, hash);
      if (!(await page.locator('main h1').count())) throw new Error(`${hash} has no heading`);
      await shot(page, name);
    }
    const empty = page.locator('main .empty-state');
    if (await empty.count()) {
      const t = (await empty.textContent()).trim();
      if (t !== 'No alerts: detections are not configured yet') throw new Error(`alerts empty state reads "${t}"`);
    }
  });

  await step('keyboard: Tab reaches the navigation links', async () => {
    // A fresh load (a hash-only goto would keep the focus where it was).
    await page.goto('about:blank');
    await page.goto(`${HUB_URL}/#/`);
    await page.locator('main .view').waitFor();
    const reached = [];
    for (let i = 0; i < 20 && reached.length < 3; i++) {
      await page.keyboard.press('Tab');
      const inNav = await page.evaluate(() => {
        const a = document.activeElement;
        return a && a.closest('nav[aria-label="Main"]') && a.tagName === 'A' ? a.textContent.trim() : null;
      });
      if (inNav) reached.push(inNav);
    }
    if (!reached.length) throw new Error('20 presses of Tab never focused a link in the main navigation');
    // Enter on a focused nav link navigates.
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('nav[aria-label="Main"] a[aria-current="page"]'));
    await shot(page, '12-keyboard');
  });

  if (problems.length) {
    current = 'page errors';
    throw new Error(problems.slice(0, 5).join('; '));
  }
}

main().then(async () => {
  clearTimeout(watchdog);
  await browser.close();
  console.log(`${passed.length} passed, 0 failed`);
  process.exit(0);
}).catch(async (e) => {
  console.error(`FAIL: ${current}: ${e && e.message ? e.message.split('\n')[0] : e}`);
  console.log(`${passed.length} passed, 1 failed`);
  try { if (browser) await browser.close(); } catch { /* closing anyway */ }
  process.exit(1);
});
