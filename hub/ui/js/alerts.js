// Alerts: what the detections raised, newest first. The filters (rule, severity,
// entity, time range) live in the URL (#/alerts?rule=restricted_access&range=24h)
// so a link can be pasted in an incident channel; the hub answers one page at a
// time, with the counts per rule and severity over the range. While the first
// page of an open-ended range is shown, new and updated alerts come in without a
// reload: every record on the live stream (live.js) may have raised one, so the
// page asks the hub again (at most every 2 s, and every 15 s in any case for the
// alerts no record raises, such as a silent sensor).
//
// #/alerts/{id} shows one alert: every field the store keeps, its records
// (#/record/{stream}/{seq}), searches for its entity's requests, and where each
// delivery target is with it. Every value is text (dom.js never uses innerHTML).

import { h, num, fmtTs, loading, errorBox, td, th, statusBadge, clear } from './dom.js';
import { getJson, RANGES } from './api.js';
import { href, go, rangePicker, setMain, paramsObject } from './route.js';
import { subscribe, onState } from './live.js';
import { liveLabel } from './overview.js';

const PAGE = 50;
const DEFAULT_RANGE = '7d';
/** Most urgent first, as the page lists them. */
export const SEVERITIES = ['critical', 'high', 'medium', 'low'];
const REFRESH_MIN_MS = 2000;
const REFRESH_EVERY_MS = 15000;

/** A severity as a badge: its name in words plus a colour and a shape. */
export function severityBadge(severity) {
  const s = SEVERITIES.includes(severity) ? severity : 'low';
  return h('span', { class: `sev sev-${s}` }, severity || '–');
}

/**
 * The range the page shows: an explicit from (and maybe to), else `range`
 * (default 7 days) back from now. `to` is null when the range is open-ended.
 */
function alertWindow(params) {
  const from = params.get('from');
  const to = params.get('to') || null;
  if (from) return { from, to, range: null };
  const key = RANGES.some((r) => r[0] === params.get('range')) ? params.get('range') : DEFAULT_RANGE;
  const span = RANGES.find((r) => r[0] === key)[1];
  return { from: new Date(Date.now() - span).toISOString(), to, range: key };
}

const FILTERS = ['rule', 'severity', 'entity'];

function filtersOf(params) {
  const f = {};
  for (const name of [...FILTERS, 'from', 'to', 'range']) {
    const v = params.get(name);
    if (v) f[name] = v;
  }
  return f;
}

/** The list's URL with `changes` applied; any change goes back to the first page. */
function listHref(filters, changes) {
  const p = { ...filters, ...changes };
  delete p.offset;
  for (const [k, v] of Object.entries(p)) if (v === null || v === undefined || v === '') delete p[k];
  return href('alerts', p);
}

function filterForm(filters, rules) {
  const id = (n) => `af-${n}`;
  const field = (name, label, hint, control) => h('div', { class: 'field' },
    h('label', { for: id(name) }, label), control,
    h('span', { id: `${id(name)}-hint`, class: 'hint' }, hint));
  const input = (name, list) => h('input', {
    id: id(name), name, type: 'text', value: filters[name] || '', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': `${id(name)}-hint`, list: list || null,
  });
  const inputs = {
    rule: input('rule', 'af-rules'),
    entity: input('entity'),
    from: input('from'),
    to: input('to'),
  };
  const severity = h('select', { id: id('severity'), name: 'severity', 'aria-describedby': `${id('severity')}-hint` },
    h('option', { value: '' }, 'any'),
    [...SEVERITIES].reverse().map((s) => h('option', { value: s, selected: filters.severity === s }, s)));
  const form = h('form', { class: 'search-form alert-filters', role: 'search', 'aria-label': 'Filter alerts' },
    h('div', { class: 'fields' },
      field('rule', 'Rule', 'a rule id, e.g. restricted_access, sigma.<id>', inputs.rule),
      field('severity', 'Severity', 'this severity or higher', severity),
      field('entity', 'Entity', 'user:alice, client:203.0.113.9, or a prefix ending in * (user:*)', inputs.entity),
      field('from', 'From', 'RFC 3339; empty: the range picked above', inputs.from),
      field('to', 'To', 'RFC 3339; empty: up to now', inputs.to)),
    h('datalist', { id: 'af-rules' }, rules.map((r) => h('option', { value: r }))),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Filter'),
      h('a', { href: href('alerts', filters.range ? { range: filters.range } : null), class: 'button' }, 'Clear filters')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = {};
    for (const [k, el] of Object.entries(inputs)) if (el.value.trim()) p[k] = el.value.trim();
    if (severity.value) p.severity = severity.value;
    if (!p.from && filters.range) p.range = filters.range;
    go('alerts', p);
  });
  return form;
}

function chips(filters) {
  const shown = FILTERS.concat(['from', 'to']).filter((k) => filters[k]);
  if (!shown.length) return h('p', { class: 'muted' }, 'No filter: every alert in the range, newest first.');
  return h('ul', { class: 'chips', 'aria-label': 'Active filters' }, shown.map((k) => h('li', { class: 'chip' },
    h('span', null, `${k}: `, h('strong', null, k === 'severity' ? `${filters[k]} or higher` : filters[k])),
    h('a', { href: listHref(filters, { [k]: null }), class: 'chip-x', 'aria-label': `Remove filter ${k}`, title: 'remove this filter' }, '×'))));
}

/** Counts per severity (tiles) and per rule (a table), each a link that filters. */
function countsSection(filters, counts) {
  const all = counts.all || {};
  const tiles = h('ul', { class: 'sev-counts', 'aria-label': 'Alerts per severity in this range' },
    SEVERITIES.map((s) => h('li', null, h('a', {
      href: listHref(filters, { severity: s }),
      class: `sev sev-count sev-${s}${filters.severity === s ? ' current' : ''}`,
      title: `show ${s} alerts and higher`,
      dataset: { severity: s },
    }, h('span', { class: 'sev-count-label' }, s), h('span', { class: 'sev-count-n' }, num(all[s] || 0))))));
  const rules = counts.rules || [];
  const ruleTable = h('div', { class: 'table-wrap' }, h('table', { class: 'rule-counts' },
    h('caption', null, 'Alerts per rule'),
    h('thead', null, h('tr', null,
      h('th', { scope: 'col' }, 'Rule'),
      h('th', { scope: 'col', class: 'num' }, 'Total'),
      SEVERITIES.map((s) => h('th', { scope: 'col', class: 'num' }, s[0].toUpperCase() + s.slice(1))))),
    h('tbody', null, rules.length
      ? rules.map((r) => h('tr', { dataset: { rule: r.rule } },
        th(h('a', { href: listHref(filters, { rule: r.rule }) }, r.rule)),
        td(num(r.total), { num: true, class: 'rule-total' }),
        SEVERITIES.map((s) => td(r[s] ? num(r[s]) : h('span', { class: 'muted' }, '0'), { num: true }))))
      : h('tr', null, h('td', { colspan: 2 + SEVERITIES.length, class: 'empty' }, 'No alert in this range.')))));
  return h('section', { class: 'alert-counts', 'aria-labelledby': 'counts-h' },
    h('h2', { id: 'counts-h' }, `In this range: ${num(all.total || 0)} alert${all.total === 1 ? '' : 's'}`),
    h('p', { class: 'hint' }, 'Counts cover the range and entity, whatever the rule and severity filters; a click filters.'),
    tiles, ruleTable);
}

function alertRow(a, filters, fresh) {
  const tr = h('tr', { class: `alert-row sev-row-${SEVERITIES.includes(a.severity) ? a.severity : 'low'}${fresh ? ' fresh' : ''}`, dataset: { id: String(a.id), revision: String(a.revision) } },
    th(h('a', { href: href(['alerts', a.id]), class: 'nowrap alert-link', 'aria-label': `alert ${a.id}: ${a.rule} on ${a.entity}, last seen ${fmtTs(a.last_seen)} UTC` }, fmtTs(a.last_seen))),
    td(severityBadge(a.severity), { class: 'c-severity' }),
    td(h('a', { href: listHref(filters, { rule: a.rule }), title: 'only this rule' }, a.rule), { class: 'c-rule' }),
    td(h('a', { href: listHref(filters, { entity: a.entity }), title: 'only this entity' }, a.entity), { class: 'wrap c-entity' }),
    td(num(a.count), { num: true, class: 'c-count' }),
    td(a.resolved ? `resolved: ${a.summary}` : a.summary, { class: 'wrap c-summary' }),
    td(fmtTs(a.first_seen), { class: 'nowrap c-first' }));
  return tr;
}

const COLUMNS = [
  ['Last seen (UTC)'], ['Severity'], ['Rule'], ['Entity'], ['Count', true], ['Summary'], ['First seen (UTC)'],
];

function alertsTable() {
  const tbody = h('tbody');
  const el = h('div', { class: 'table-wrap' }, h('table', { class: 'alerts' },
    h('caption', { class: 'visually-hidden' }, 'Alerts, newest first'),
    h('thead', null, h('tr', null, COLUMNS.map(([l, n]) => h('th', { scope: 'col', class: n ? 'num' : null }, l)))),
    tbody));
  /** Shows `list`, keeping the rows that did not change (and the focus in them). */
  const fill = (list, filters, { mark } = {}) => {
    const old = new Map();
    for (const tr of tbody.querySelectorAll('tr.alert-row')) old.set(tr.dataset.id, tr);
    const rows = list.map((a) => {
      const kept = old.get(String(a.id));
      if (kept && kept.dataset.revision === String(a.revision)) return kept;
      return alertRow(a, filters, mark);
    });
    let changed = 0;
    const keep = new Set(rows);
    for (const tr of [...tbody.children]) if (!keep.has(tr)) tr.remove();
    rows.forEach((tr, i) => {
      if (tbody.children[i] !== tr) {
        tbody.insertBefore(tr, tbody.children[i] || null);
        if (tr.classList.contains('fresh')) changed += 1;
      }
    });
    if (!rows.length) {
      tbody.appendChild(h('tr', null, h('td', { colspan: COLUMNS.length, class: 'empty' }, 'No alert matches these filters in this range.')));
    }
    return changed;
  };
  return { el, fill };
}

async function alertList(main, params) {
  const filters = filtersOf(params);
  const offset = Math.max(0, parseInt(params.get('offset') || '0', 10) || 0);
  const liveState = h('span', { class: 'live-state', role: 'status' });
  const title = () => h('h1', { tabindex: '-1' }, 'Alerts ', liveState,
    h('a', { href: href('rules'), class: 'title-link' }, 'Detection rules'));
  const win0 = alertWindow(params);
  const picker = () => rangePicker(['alerts'], params, { ...win0, to: win0.to || 'now' });
  setMain(main, title(), picker(), loading());

  const query = () => {
    const win = alertWindow(params);
    return {
      from: win.from, to: win.to, rule: filters.rule, severity: filters.severity, entity: filters.entity,
      limit: PAGE, offset,
    };
  };
  let res;
  try {
    res = await getJson('/api/alerts', query());
  } catch (e) {
    setMain(main, title(), picker(), filterForm(filters, []), errorBox(e));
    return null;
  }

  const counts = h('div');
  const heading = h('h2', { id: 'alerts-h' });
  const pagers = [h('nav', { class: 'pager', 'aria-label': 'Alert pages (top)' }), h('nav', { class: 'pager', 'aria-label': 'Alert pages (bottom)' })];
  const note = h('p', { class: 'live-note hint', role: 'status', 'aria-live': 'polite' });
  const table = alertsTable();
  const show = (r, mark) => {
    const list = r.alerts || [];
    const total = r.total ?? list.length;
    clear(counts).appendChild(countsSection(filters, r.counts || {}));
    heading.textContent = `Alerts (${num(total)})`;
    for (const [i, nav] of pagers.entries()) {
      clear(nav).append(...[
        offset > 0 ? h('a', { href: href('alerts', { ...paramsObject(params), offset: Math.max(0, offset - PAGE) || null }), rel: 'prev' }, '← Newer') : null,
        h('span', { class: 'page-info' }, list.length ? `${num(offset + 1)}–${num(offset + list.length)} of ${num(total)}` : `0 of ${num(total)}`),
        offset + list.length < total ? h('a', { href: href('alerts', { ...paramsObject(params), offset: offset + PAGE }), rel: 'next' }, 'Older →') : null,
      ].filter(Boolean));
      nav.dataset.where = i ? 'bottom' : 'top';
    }
    return table.fill(list, filters, { mark });
  };
  show(res, false);
  const rules = (res.counts && res.counts.rules || []).map((r) => r.rule);
  setMain(main, title(), picker(), filterForm(filters, rules), chips(filters), counts,
    h('section', { 'aria-labelledby': 'alerts-h' }, heading, note, pagers[0], table.el, pagers[1]));

  // Live: only the first page of a range that reaches now can gain alerts.
  if (offset > 0 || filters.to) {
    liveState.textContent = '';
    return null;
  }
  const cleanups = [];
  cleanups.push(onState((s) => { liveState.textContent = liveLabel(s); liveState.dataset.state = s; }));
  let timer = null;
  let last = 0;
  let busy = false;
  let stopped = false;
  const refresh = async () => {
    timer = null;
    if (busy || stopped) return;
    busy = true;
    last = Date.now();
    try {
      const r = await getJson('/api/alerts', query());
      if (stopped) return;
      const changed = show(r, true);
      if (changed) note.textContent = `${changed} new or updated alert${changed === 1 ? '' : 's'} at ${fmtTs(Date.now())} UTC`;
    } catch (e) {
      note.textContent = `Could not refresh: ${e.message}`;
    } finally {
      busy = false;
    }
  };
  const soon = () => {
    if (timer || stopped) return;
    timer = setTimeout(refresh, Math.max(300, REFRESH_MIN_MS - (Date.now() - last)));
  };
  cleanups.push(subscribe(soon));
  const every = setInterval(soon, REFRESH_EVERY_MS);
  cleanups.push(() => { stopped = true; clearInterval(every); clearTimeout(timer); });
  return () => cleanups.forEach((f) => f());
}

function kvRow(field, label, value) {
  return h('tr', { dataset: { field } }, th(label), td(value, { class: 'wrap value' }));
}

function timeNode(ts) {
  return h('time', { datetime: ts || '' }, ts ? `${fmtTs(ts)} UTC` : '–');
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return '–';
  if (s % 86400 === 0) return `${s / 86400} d`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

const DELIVERY_TEXT = {
  delivered: ['ok', 'delivered'],
  pending: ['warn', 'not yet'],
  failing: ['bad', 'failing'],
};

async function alertDetail(main, id) {
  const title = (a) => h('h1', { tabindex: '-1' }, `Alert #${id} `, a ? severityBadge(a.severity) : null);
  setMain(main, title(), loading());
  let a;
  try {
    a = await getJson(`/api/alerts/${encodeURIComponent(id)}`);
  } catch (e) {
    setMain(main, title(), errorBox(e), h('p', null, h('a', { href: href('alerts') }, 'All alerts')));
    return null;
  }
  const records = a.records || [];
  // The records behind it, each from the store (at most 20 are linked).
  const found = await Promise.allSettled(records.map((r) => getJson(`/api/records/${encodeURIComponent(r.stream)}/${encodeURIComponent(r.seq)}`)));

  const fields = h('div', { class: 'table-wrap' }, h('table', { class: 'kv alert-fields' },
    h('caption', null, 'Fields'),
    h('tbody', null,
      kvRow('id', 'Id', h('code', null, String(a.id))),
      kvRow('rule', 'Rule', h('a', { href: href('alerts', { rule: a.rule }) }, a.rule)),
      kvRow('severity', 'Severity', severityBadge(a.severity)),
      kvRow('entity', 'Entity', h('a', { href: href('alerts', { entity: a.entity }) }, a.entity)),
      kvRow('summary', 'Summary', a.summary),
      kvRow('first_seen', 'First seen (record time)', timeNode(a.first_seen)),
      kvRow('last_seen', 'Last seen (record time)', timeNode(a.last_seen)),
      kvRow('count', 'Findings', h('code', null, String(a.count))),
      kvRow('resolved', 'Resolved', a.resolved
        ? h('span', null, timeNode(a.resolved), h('span', { class: 'hint' }, ' — what raised it was shown to be over (a chain gap that filled)'))
        : 'open'),
      kvRow('raised', 'Raised (hub clock)', a.raised
        ? timeNode(a.raised)
        : h('span', null, timeNode(a.first_seen), h('span', { class: 'hint' }, ' — stored before the hub kept the time it raised alerts; this is its first record\'s time'))),
      kvRow('window', 'Grouping window', `${fmtSeconds(a.window_seconds)}: findings of this rule and entity within it of the last one update this alert`),
      kvRow('revision', 'Revision', h('code', null, String(a.revision ?? '–'))))));

  const s = a.search;
  const links = h('ul', { class: 'quick-links', 'aria-label': 'Related' },
    s ? h('li', null, h('a', { href: href('search', s.during), class: 'entity-search' }, `Requests of ${a.entity} during this alert`)) : null,
    s ? h('li', null, h('a', { href: href('search', s.all), class: 'entity-search-all' }, `All requests of ${a.entity}`)) : null,
    h('li', null, h('a', { href: href('alerts', { entity: a.entity }) }, `Alerts for ${a.entity}`)),
    h('li', null, h('a', { href: href('alerts', { rule: a.rule }) }, `All ${a.rule} alerts`)));

  const recordRows = records.map((r, i) => {
    const link = h('a', { href: href(['record', r.stream, r.seq]), class: 'alert-record nowrap' }, `${r.stream}#${r.seq}`);
    const got = found[i];
    if (got.status !== 'fulfilled') {
      return h('tr', null, th(link), h('td', { colspan: 6, class: 'muted' }, got.reason && got.reason.status === 404 ? 'not in this store' : `could not load: ${got.reason && got.reason.message}`));
    }
    const f = got.value.fields || {};
    const en = got.value.enrichment || {};
    const user = f['user.name'] || en.user || null;
    return h('tr', { dataset: { stream: r.stream, seq: String(r.seq) } }, th(link),
      td(fmtTs(f.timestamp), { class: 'nowrap' }),
      td(f['http.request.method'] || '–'),
      td(h('span', { class: 'path' }, f['url.path'] || '–'), { class: 'wrap c-path' }),
      td(statusBadge(f['http.response.status_code'])),
      td(user ? h('a', { href: href(['user', user]) }, user) : h('span', { class: 'muted' }, 'anonymous'), { class: 'c-user' }),
      td(f['client.address'] || '–'));
  });
  const recordsSection = h('section', { 'aria-labelledby': 'alert-records-h' },
    h('h2', { id: 'alert-records-h' }, 'Records behind it'),
    records.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'alert-records' },
        h('caption', { class: 'visually-hidden' }, 'Records that raised or updated this alert'),
        h('thead', null, h('tr', null, ['Record', 'Time (UTC)', 'Method', 'Path', 'Status', 'User', 'Client'].map((l) => h('th', { scope: 'col' }, l)))),
        h('tbody', null, recordRows)))
      : h('p', { class: 'muted' }, 'No record: this rule watches streams, not requests (a silent sensor, a chain break); see Integrity.'),
    records.length && a.count > records.length
      ? h('p', { class: 'hint' }, `${num(a.count)} findings; the store links the first ${records.length} records.`)
      : null);

  const deliveries = a.deliveries || [];
  const deliverySection = h('section', { 'aria-labelledby': 'alert-deliveries-h' },
    h('h2', { id: 'alert-deliveries-h' }, 'Delivery'),
    deliveries.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'alert-deliveries' },
        h('caption', { class: 'visually-hidden' }, 'Where each delivery target is with this alert'),
        h('thead', null, h('tr', null, ['Target', 'This alert', 'Failed tries in a row', 'Last error'].map((l) => h('th', { scope: 'col' }, l)))),
        h('tbody', null, deliveries.map((d) => {
          const [cls, text] = DELIVERY_TEXT[d.state] || ['warn', d.state];
          return h('tr', { dataset: { state: d.state } }, th(h('code', null, d.target)),
            td(h('span', { class: `badge ${cls}` }, text)),
            td(num(d.failures), { num: true }),
            td(d.last_error || '–', { class: 'wrap' }));
        }))))
      : h('p', { class: 'muted' }, 'No delivery target has recorded a delivery in this store (the hub sends alerts to NATS, Alertmanager or webhooks only when told to).'),
    h('p', { class: 'hint' }, '"Delivered" means the target received this alert as it is now; an alert that changed since is sent again.'));

  setMain(main, title(a),
    h('p', { class: 'summary alert-summary' }, a.summary),
    links, fields, recordsSection, deliverySection,
    h('p', null, h('a', { href: href('alerts') }, '← All alerts')));
  return null;
}

export function alerts(main, { parts, params }) {
  if (parts[1]) return alertDetail(main, parts[1]);
  return alertList(main, params);
}
