#!/usr/bin/env node
// Browser test of the tracer-hub dashboard: headless Chromium through
// playwright-core, against a running hub.
//
//   HUB_URL=http://127.0.0.1:8080 HUB_PASSWORD=... SCREENSHOT_DIR=out/shots \
//   EXPECT_USER=alice EXPECT_PATH=/probe-123 [EXPECT_BREAK_STREAM=web2] \
//   [EXPECT_ALERT='{"id":1,"rule":...}' EXPECT_ALERT_PATH=/hr/salaries \
//    EXPECT_LIVE_ALERT_ENTITY=user:carol] [FORBIDDEN=$'secret1\nsecret2'] \
//   node tests/browser/dashboard.mjs
//
// Prints READY_FOR_LIVE on stdout once the live view is connected, then waits
// for one line on stdin (the caller makes a request to EXPECT_PATH meanwhile)
// and checks that the live view shows it within LIVE_TIMEOUT_MS (10 s).
// With EXPECT_ALERT (an alert as `tracer-hub alerts --format jsonl` prints it
// from the store), checks the Alerts page: the alert listed and counted,
// filters by rule, severity and entity in the URL, the detail showing the
// store's fields and a delivery, the link to its record (whose path is
// EXPECT_ALERT_PATH) and to its entity's requests. With
// EXPECT_LIVE_ALERT_ENTITY it prints READY_FOR_ALERT with the filtered page
// open, waits for a line on stdin (the caller raises an alert for that entity
// meanwhile) and checks that the alert shows up without a reload.
// With EXPECT_RULE_OFF (a built-in rule the hub's detections file switches off),
// checks the rules page reached from the Alerts page: that rule listed as not
// running, chain_gap running at high severity, and a rule's link to its alerts.
// FORBIDDEN: strings (one a line) no page and no API answer may contain.
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
const EXPECT_ALERT = process.env.EXPECT_ALERT ? JSON.parse(process.env.EXPECT_ALERT) : null;
const EXPECT_ALERT_PATH = env('EXPECT_ALERT_PATH', false);
const EXPECT_LIVE_ALERT_ENTITY = env('EXPECT_LIVE_ALERT_ENTITY', false);
const EXPECT_RULE_OFF = env('EXPECT_RULE_OFF', false);
const FORBIDDEN = (process.env.FORBIDDEN || '').split('\n').filter((x) => x.length >= 6);
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
const problems = []; // script errors, CSP violations and secrets seen in the page
const scans = []; // pending checks of API answers

function scanText(where, text) {
  for (const secret of FORBIDDEN) {
    if (text.includes(secret)) problems.push(`secret: ${where} holds one of FORBIDDEN (${secret.length} characters)`);
  }
}

/** The view's markup must hold no secret. */
async function scanPage(page, where) {
  scanText(`the page ${where}`, await page.evaluate(() => document.documentElement.outerHTML));
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
}

async function route(page, hash) {
  // A hash-only goto returns before the app's hashchange handler runs: without
  // marking the view on screen, the previous view (done loading) would pass for
  // this one, and its late answer would re-render under the next action.
  if (new URL(page.url()).hash !== hash) await markView(page);
  await page.goto(`${HUB_URL}/${hash}`);
  await settled(page);
}

/** Marks the view on screen, so settled() waits for the one that replaces it. */
async function markView(page) {
  await page.evaluate(() => { const v = document.querySelector('main .view'); if (v) v.dataset.old = '1'; });
}

/** Runs `action` (a click, a form) and waits for the URL and the new view to be done. */
async function navigate(page, urlIs, action) {
  await markView(page);
  await Promise.all([page.waitForURL(urlIs), action()]);
  await settled(page);
}

/** Waits for the current view to finish loading (after a click or a form). */
async function settled(page) {
  await page.waitForFunction(() => document.querySelector('main .view:not([data-old])') && !document.querySelector('main .loading'), null, { timeout: 15000 });
  const err = page.locator('main .error');
  if (await err.count()) throw new Error(`the view shows an error: ${await err.first().textContent()}`);
  await scanPage(page, new URL(page.url()).hash);
}

const hashParams = (u) => new URLSearchParams(new URL(u).hash.split('?')[1] || '');

async function main() {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  // Every answer from the hub (but the endless live stream) is scanned for secrets.
  page.on('response', (r) => {
    if (!r.url().startsWith(HUB_URL) || /event-stream/.test(r.headers()['content-type'] || '')) return;
    scans.push(r.text().then((t) => scanText(`${new URL(r.url()).pathname} (${r.status()})`, t)).catch(() => {}));
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
    await navigate(page, (u) => hashParams(u.href).get('user') === EXPECT_USER,
      () => page.getByLabel('User', { exact: true }).press('Enter'));
    const users = await page.locator('main table.records tbody td.c-user').allTextContents();
    if (!users.length) {
      const heading = await page.locator('main #results-h').textContent().catch(() => 'no results heading');
      const api = await page.evaluate(async (u) => (await fetch(`/api/records?user=${encodeURIComponent(u)}&limit=3`)).text(), EXPECT_USER);
      throw new Error(`no rows for user ${EXPECT_USER} at ${page.url()} ("${heading}"; the API says ${api.slice(0, 400)})`);
    }
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


  if (EXPECT_ALERT) {
    const want = EXPECT_ALERT;
    const rowOf = (entity) => page.locator('main table.alerts tbody tr.alert-row', {
      has: page.locator('td.c-entity', { hasText: new RegExp(`^${entity.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }),
    });

    await step('alerts page lists and counts the alert the store holds', async () => {
      await route(page, '#/alerts');
      const row = rowOf(want.entity).filter({ has: page.locator('td.c-rule', { hasText: want.rule }) });
      await row.first().waitFor({ timeout: 15000 })
        .catch(() => { throw new Error(`no row for ${want.rule} on ${want.entity}`); });
      const sev = (await row.first().locator('td.c-severity .sev').textContent()).trim();
      if (sev !== want.severity) throw new Error(`severity shows "${sev}", the store says "${want.severity}"`);
      const summary = (await row.first().locator('td.c-summary').textContent()).trim();
      if (summary !== want.summary) throw new Error(`summary shows "${summary}", the store says "${want.summary}"`);
      const ruleTotal = await page.locator(`main table.rule-counts tbody tr[data-rule="${want.rule}"] td.rule-total`).textContent();
      if (!(Number(ruleTotal.replace(/,/g, '')) >= 1)) throw new Error(`the count for ${want.rule} is "${ruleTotal}"`);
      const tile = await page.locator(`main .sev-count[data-severity="${want.severity}"] .sev-count-n`).textContent();
      if (!(Number(tile.replace(/,/g, '')) >= 1)) throw new Error(`the ${want.severity} tile counts "${tile}"`);
      // Newest (last seen) first.
      const times = await page.locator('main table.alerts tbody tr.alert-row th a').allTextContents();
      const sorted = [...times].sort().reverse();
      if (times.join('|') !== sorted.join('|')) throw new Error(`not newest first: ${times.join(', ')}`);
      await shot(page, '11-alerts');
    });

    await step('alerts filter by rule and severity, in the URL', async () => {
      await page.getByLabel('Rule', { exact: true }).fill(want.rule);
      await page.getByLabel('Severity', { exact: true }).selectOption(want.severity);
      await navigate(page, (u) => hashParams(u).get('rule') === want.rule && hashParams(u).get('severity') === want.severity,
        () => page.getByRole('button', { name: 'Filter' }).click());
      await rowOf(want.entity).first().waitFor();
      const rules = await page.locator('main table.alerts tbody td.c-rule').allTextContents();
      const other = rules.filter((r) => r.trim() !== want.rule);
      if (!rules.length || other.length) throw new Error(`rows of other rules: ${[...new Set(other)].join(', ') || 'no rows'}`);
      // The link alone gives the same page (shareable).
      const shared = page.url();
      await page.goto('about:blank');
      await page.goto(shared);
      await settled(page);
      await rowOf(want.entity).first().waitFor();
      const chips = await page.locator('main .chips .chip').allTextContents();
      if (!chips.some((c) => c.includes(want.rule))) throw new Error(`no chip for the rule filter (chips: ${chips.join(' | ')})`);
      await shot(page, '12-alerts-filtered');
    });

    if (EXPECT_LIVE_ALERT_ENTITY) {
      await step('a new alert appears without a reload', async () => {
        await page.locator('main .live-state[data-state="open"]').waitFor({ timeout: 15000 })
          .catch(() => { throw new Error('the live stream did not connect on the Alerts page'); });
        await page.evaluate(() => { window.notReloaded = true; });
        console.log('READY_FOR_ALERT');
        const how = await nextStdinLine();
        if (how === 'eof') console.log('# stdin ended without a line; checking the alerts page anyway');
        try {
          await rowOf(EXPECT_LIVE_ALERT_ENTITY).first().waitFor({ timeout: 20000 });
        } catch {
          const seen = await page.locator('main table.alerts tbody td.c-entity').allTextContents();
          throw new Error(`no alert for ${EXPECT_LIVE_ALERT_ENTITY} within 20 s (rows: ${seen.join(', ') || 'none'})`);
        }
        if (!(await page.evaluate(() => window.notReloaded === true))) throw new Error('the page was reloaded');
        const first = (await page.locator('main table.alerts tbody tr.alert-row td.c-entity').first().textContent()).trim();
        if (first !== EXPECT_LIVE_ALERT_ENTITY) throw new Error(`the new alert is not on top (top row: ${first})`);
        await shot(page, '13-alerts-live');
      });
    }

    await step('alerts filter by entity', async () => {
      await navigate(page, (u) => hashParams(u).get('entity') === want.entity,
        () => rowOf(want.entity).first().locator('td.c-entity a').click());
      const entities = await page.locator('main table.alerts tbody td.c-entity').allTextContents();
      const other = entities.filter((e) => e.trim() !== want.entity);
      if (!entities.length || other.length) throw new Error(`rows of other entities: ${[...new Set(other)].join(', ') || 'no rows'}`);
    });

    await step('alert detail shows the fields the store holds', async () => {
      await navigate(page, (u) => new URL(u).hash === `#/alerts/${want.id}`,
        () => rowOf(want.entity).first().locator('th a.alert-link').click());
      const field = (name) => page.locator(`main table.alert-fields tr[data-field="${name}"] td`);
      const text = async (name) => (await field(name).textContent()).trim();
      const checks = [
        ['id', await text('id'), String(want.id)],
        ['rule', await text('rule'), want.rule],
        ['severity', await text('severity'), want.severity],
        ['entity', await text('entity'), want.entity],
        ['summary', await text('summary'), want.summary],
        ['count', await text('count'), String(want.count)],
        ['first_seen', await field('first_seen').locator('time').getAttribute('datetime'), want.first_seen],
        ['last_seen', await field('last_seen').locator('time').getAttribute('datetime'), want.last_seen],
        ['raised', await field('raised').locator('time').getAttribute('datetime'), want.raised],
        ['resolved', want.resolved ? await field('resolved').locator('time').getAttribute('datetime') : await text('resolved'), want.resolved ?? 'open'],
      ];
      for (const [name, shown, stored] of checks) {
        if (shown !== stored) throw new Error(`${name} shows "${shown}", the store says "${stored}"`);
      }
      for (const name of ['raised', 'window', 'revision']) {
        if (!(await text(name))) throw new Error(`no ${name}`);
      }
      const links = await page.locator('main a.alert-record').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
      const expected = want.records.map((r) => `#/record/${encodeURIComponent(r.stream)}/${r.seq}`);
      if (links.join(' ') !== expected.join(' ')) throw new Error(`record links ${links.join(' ')}, the store links ${expected.join(' ')}`);
      const delivered = await page.locator('main table.alert-deliveries tbody tr[data-state="delivered"] th').allTextContents();
      if (!delivered.some((t) => t.startsWith('nats '))) throw new Error(`no NATS delivery shown (delivered: ${delivered.join(', ') || 'none'})`);
      await shot(page, '14-alert-detail');
    });

    await step("the alert's record link opens its request", async () => {
      const first = want.records[0];
      await navigate(page, (u) => new URL(u).hash === `#/record/${encodeURIComponent(first.stream)}/${first.seq}`,
        () => page.locator('main a.alert-record').first().click());
      await page.locator('main .chain').waitFor();
      const summary = (await page.locator('main p.summary').textContent()).trim();
      if (EXPECT_ALERT_PATH && !summary.includes(EXPECT_ALERT_PATH)) throw new Error(`the record reads "${summary}", not ${EXPECT_ALERT_PATH}`);
      const user = want.entity.startsWith('user:') ? want.entity.slice(5) : null;
      if (user && !summary.includes(` by ${user} `)) throw new Error(`the record reads "${summary}", not by ${user}`);
      await shot(page, '15-alert-record');
    });

    await step("the alert links to its entity's requests", async () => {
      await navigate(page, (u) => new URL(u).hash === `#/alerts/${want.id}`, () => page.goBack());
      await navigate(page, (u) => new URL(u).hash.startsWith('#/search?'),
        () => page.locator('main a.entity-search').click());
      await page.locator('main #results-h').waitFor();
      const user = want.entity.startsWith('user:') ? want.entity.slice(5) : null;
      if (user) {
        if (hashParams(page.url()).get('user') !== user) throw new Error(`the search is ${page.url()}`);
        const users = await page.locator('main table.records tbody td.c-user').allTextContents();
        if (!users.length || users.some((u) => u.trim() !== user)) throw new Error(`rows: ${users.join(', ') || 'none'}`);
      }
      if (EXPECT_ALERT_PATH) {
        const paths = await page.locator('main table.records tbody td.c-path').allTextContents();
        if (!paths.some((p) => p.includes(EXPECT_ALERT_PATH))) throw new Error(`no ${EXPECT_ALERT_PATH} among ${paths.join(', ')}`);
      }
      await shot(page, '16-alert-entity-search');
    });
  }

  await step('other views render', async () => {
    for (const [hash, name] of [['#/endpoints', '07-endpoints'], ['#/users', '08-users'], [`#/user/${encodeURIComponent(EXPECT_USER)}`, '09-user'], ['#/clients', '10-clients'], ['#/alerts', '11-alerts']]) {
      await route(page, hash);
      if (!(await page.locator('main h1').count())) throw new Error(`${hash} has no heading`);
      if (!EXPECT_ALERT || hash !== '#/alerts') await shot(page, name);
    }
  });

  if (EXPECT_RULE_OFF) {
    await step('the rules page lists what runs, reached from the alerts page', async () => {
      await route(page, '#/alerts');
      await navigate(page, (u) => new URL(u).hash === '#/rules',
        () => page.locator('main h1 a.title-link').click());
      await page.locator('main table.rules tbody tr').first().waitFor();
      const runs = async (rule) => (await page.locator(`main table.rules tr[data-rule="${rule}"] td.c-runs`).textContent()).trim();
      if ((await runs(EXPECT_RULE_OFF)) !== 'no') throw new Error(`${EXPECT_RULE_OFF} runs: ${await runs(EXPECT_RULE_OFF)}`);
      if ((await runs('chain_gap')) !== 'yes') throw new Error(`chain_gap runs: ${await runs('chain_gap')}`);
      const severity = (await page.locator('main table.rules tr[data-rule="chain_gap"] .sev').textContent()).trim();
      if (severity !== 'high') throw new Error(`chain_gap severity ${severity}`);
      const banner = (await page.locator('main p.banner').textContent()).trim();
      if (!banner.includes(`Switched off: ${EXPECT_RULE_OFF}`)) throw new Error(`banner: ${banner}`);
      const shared = (await page.locator('main p.rules-shared').textContent()).trim();
      if (!shared.includes('08:00-18:00 UTC')) throw new Error(`working hours: ${shared}`);
      await shot(page, '17-rules');
      await navigate(page, (u) => hashParams(u).get('rule') === 'chain_gap',
        () => page.locator('main table.rules tr[data-rule="chain_gap"] th a').click());
    });
  }

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
    await shot(page, '17-keyboard');
  });

  await Promise.all(scans);
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
