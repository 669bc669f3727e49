// Rules: every detection as the hub read its files at start (`tracer-hub rules`):
// the id its alerts carry (a link to them), whether it runs, its severity, where it
// comes from and its settings, so "why did this not alert" starts with what runs.

import { h, num, loading, errorBox, td, th } from './dom.js';
import { getJson } from './api.js';
import { href, setMain } from './route.js';
import { severityBadge } from './alerts.js';

export async function rules(main) {
  const title = h('h1', { tabindex: '-1' }, 'Detection rules');
  setMain(main, title, loading());
  let res;
  try {
    res = await getJson('/api/rules');
  } catch (e) {
    setMain(main, title, errorBox(e));
    return null;
  }
  const list = res.rules || [];
  const off = list.filter((r) => !r.runs);
  const summary = h('p', { class: res.detecting ? 'banner ok' : 'banner warn', role: 'status' },
    res.detecting
      ? `${list.length - off.length} of ${list.length} rules run on what this hub ingests.`
      : 'This hub serves a store without ingesting: no rule runs in it.',
    off.length ? ` Switched off: ${off.map((r) => r.rule).join(', ')}.` : '');
  const calendar = res.calendar || {};
  const overrides = (kind) => Object.entries(calendar[kind] || {}).map(([name, hours]) => `${name}: ${hours}`);
  const shared = h('p', { class: 'rules-shared' },
    `Working hours ${calendar.default || '–'}`,
    [...overrides('users'), ...overrides('departments')].length
      ? ` (overrides: ${[...overrides('users'), ...overrides('departments')].join('; ')})` : '',
    `. New sources and first accesses are learned for ${res.learning || '–'} before they alert;`,
    ` at most ${res.max_entities === undefined ? '–' : num(res.max_entities)} entities are remembered per tracker.`);
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'rules' },
    h('caption', null, 'Rules, as read when the hub started'),
    h('thead', null, h('tr', null, ['Rule', 'Runs', 'Severity', 'Source', 'Settings']
      .map((l) => h('th', { scope: 'col' }, l)))),
    h('tbody', null, list.map(ruleRow))));
  setMain(main, title, summary, shared, table);
  return null;
}

function ruleRow(r) {
  return h('tr', { class: r.runs ? null : 'row-off', 'data-rule': r.rule },
    th(h('a', { href: href('alerts', { rule: r.rule }) }, r.rule)),
    td(r.runs ? 'yes' : h('span', { class: 'warn' }, 'no'), { class: 'c-runs' }),
    td(severityBadge(r.severity)),
    td(r.source),
    td(h('code', null, settingsText(r.settings)), { class: 'c-settings' }));
}

/** `key = value` pairs, nested tables inline, as the detections file writes them. */
function settingsText(settings) {
  return Object.entries(settings || {})
    .map(([k, v]) => `${k} = ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(', ') || '–';
}
