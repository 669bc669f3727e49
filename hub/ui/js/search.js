// Search: every filter of /api/records as a labelled field; the filters live in
// the URL (#/search?user=alice&status=4xx), results are paged 50 at a time and
// can be exported as CSV or JSONL with the same filters.

import { h, num, loading, errorBox } from './dom.js';
import { getJson, toQuery } from './api.js';
import { href, setMain, go } from './route.js';
import { recordsTable } from './records.js';
import { subscribe, onState, recentRecords } from './live.js';
import { liveLabel } from './overview.js';

export const FILTERS = [
  { name: 'from', label: 'From', hint: 'RFC 3339, e.g. 2026-11-22T22:00:00Z' },
  { name: 'to', label: 'To', hint: 'RFC 3339' },
  { name: 'since', label: 'Since', hint: 'a duration back from now, e.g. 15m, 2h, 7d' },
  { name: 'user', label: 'User', hint: 'user name' },
  { name: 'credential', label: 'Credential', hint: 'credential fingerprint' },
  { name: 'client', label: 'Client', hint: 'address or CIDR, e.g. 203.0.113.0/24' },
  { name: 'path', label: 'Path', hint: 'prefix (/admin) or glob (/api/*/export)' },
  { name: 'template', label: 'Template', hint: 'URL template, e.g. /users/{id}' },
  { name: 'asset', label: 'Asset', hint: 'asset name' },
  { name: 'status', label: 'Status', hint: 'a code (404) or a class (4xx)' },
  { name: 'method', label: 'Method', hint: 'GET, POST, …', list: 'methods' },
  { name: 'stream', label: 'Stream', hint: 'sensor stream id', list: 'streams' },
];
const PAGE = 50;
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE'];

function filtersOf(params) {
  const f = {};
  for (const { name } of FILTERS) {
    const v = params.get(name);
    if (v) f[name] = v;
  }
  return f;
}

function searchForm(filters) {
  const inputs = {};
  const fields = FILTERS.map((f) => {
    const id = `f-${f.name}`;
    inputs[f.name] = h('input', {
      id, name: f.name, type: 'text', value: filters[f.name] || '', autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': `${id}-hint`, list: f.list || null,
    });
    return h('div', { class: 'field' },
      h('label', { for: id }, f.label),
      inputs[f.name],
      h('span', { id: `${id}-hint`, class: 'hint' }, f.hint));
  });
  const streams = h('datalist', { id: 'streams' });
  getJson('/api/integrity').then((r) => {
    for (const s of r.streams || []) streams.appendChild(h('option', { value: s.stream }));
  }).catch(() => {});
  const form = h('form', { class: 'search-form', role: 'search', 'aria-label': 'Filter requests' },
    h('div', { class: 'fields' }, fields),
    h('datalist', { id: 'methods' }, METHODS.map((m) => h('option', { value: m }))),
    streams,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Search'),
      h('a', { href: href('search'), class: 'button' }, 'Clear filters')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = {};
    for (const [k, el] of Object.entries(inputs)) if (el.value.trim()) p[k] = el.value.trim();
    go('search', p);
  });
  return form;
}

/** The active filters as chips, each with a link that drops it. */
function chips(filters) {
  const names = Object.keys(filters);
  if (!names.length) return h('p', { class: 'muted' }, 'No filter: all requests (newest first).');
  return h('ul', { class: 'chips', 'aria-label': 'Active filters' }, names.map((k) => {
    const rest = { ...filters };
    delete rest[k];
    return h('li', { class: 'chip' },
      h('span', null, `${k}: `, h('strong', null, filters[k])),
      h('a', { href: href('search', rest), class: 'chip-x', 'aria-label': `Remove filter ${k}`, title: 'remove this filter' }, '×'));
  }));
}

export async function search(main, { params }) {
  const filters = filtersOf(params);
  const offset = Math.max(0, parseInt(params.get('offset') || '0', 10) || 0);
  const head = () => [h('h1', { tabindex: '-1' }, 'Search'), searchForm(filters), chips(filters)];
  setMain(main, ...head(), loading());
  let res;
  try {
    res = await getJson('/api/records', { ...filters, limit: PAGE, offset });
  } catch (e) {
    setMain(main, ...head(), errorBox(e));
    return null;
  }
  const recs = res.records || [];
  const total = res.total ?? recs.length;
  const q = toQuery(filters);
  const exportLinks = h('p', { class: 'export' }, 'Export all matches: ',
    h('a', { href: `/api/records?${q ? `${q}&` : ''}format=csv`, download: 'requests.csv' }, 'CSV'), ' · ',
    h('a', { href: `/api/records?${q ? `${q}&` : ''}format=jsonl`, download: 'requests.jsonl' }, 'JSONL'));

  const pager = (where) => h('nav', { class: 'pager', 'aria-label': `Result pages (${where})` },
    offset > 0 ? h('a', { href: href('search', { ...filters, offset: Math.max(0, offset - PAGE) || null }), rel: 'prev' }, '← Newer') : null,
    h('span', { class: 'page-info' },
      recs.length ? `${num(offset + 1)}–${num(offset + recs.length)} of ${num(total)}` : `0 of ${num(total)}`),
    offset + recs.length < total ? h('a', { href: href('search', { ...filters, offset: offset + PAGE }), rel: 'next' }, 'Older →') : null);

  const t = recordsTable(recs, { caption: 'Matching requests', captionHidden: true, empty: 'No requests match these filters.' });
  setMain(main, ...head(),
    h('section', { 'aria-labelledby': 'results-h' },
      h('h2', { id: 'results-h' }, `Results (${num(total)})`),
      exportLinks, pager('top'), t.el, pager('bottom')));
  return null;
}

/** Live tail: the newest requests as they arrive over SSE. */
export async function liveTail(main) {
  const state = h('span', { class: 'live-state', role: 'status' });
  setMain(main, h('h1', { tabindex: '-1' }, 'Live tail'), loading());
  // Subscribe first so nothing that arrives while the backlog loads is lost.
  const early = [];
  let sink = (rec) => early.push(rec);
  const off = subscribe((rec) => sink(rec));
  const backlog = await recentRecords(200);
  const t = recordsTable(backlog, { caption: 'Latest requests, newest first', empty: 'Waiting for requests…', max: 200 });
  let paused = false;
  const queued = [];
  const pauseBtn = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Pause');
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.setAttribute('aria-pressed', String(paused));
    pauseBtn.textContent = paused ? `Resume` : 'Pause';
    if (!paused) { for (const r of queued.reverse()) t.prepend(r); queued.length = 0; }
  });
  setMain(main,
    h('h1', { tabindex: '-1' }, 'Live tail ', state),
    h('p', { class: 'toolbar' }, pauseBtn, h('span', { class: 'hint' }, ' Keeps the latest 200 requests. Pausing holds new ones until you resume.')),
    t.el);
  const offState = onState((s) => { state.textContent = liveLabel(s); state.dataset.state = s; });
  sink = (rec) => {
    if (paused) { queued.push(rec); pauseBtn.textContent = `Resume (${queued.length} new)`; } else t.prepend(rec);
  };
  for (const rec of early) if (!backlog.includes(rec)) sink(rec);
  return () => { off(); offState(); };
}

