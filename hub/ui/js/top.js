// The "top" views: endpoints and assets, users and credentials, clients, and a
// user's own page. Each key links to Search (or the user's page) with the same
// time range, so a click narrows the question.

import { h, num, td, bar, country, loading, errorBox, clear } from './dom.js';
import { getJson, windowOf } from './api.js';
import { href, rangePicker, setMain } from './route.js';
import { recordsTable } from './records.js';

/** The time filter to carry into Search links: the window pinned as from/to. */
function carry(win) {
  return { from: win.from, to: win.to };
}

/**
 * A ranked table. `link(row)` gives the key's href; `extra` adds columns
 * (e.g. country/ASN). Columns of numbers can be sorted by their header button.
 */
function topTable({ caption, keyLabel, rows, link, extra = [], numbers = ['requests', 'failures', 'users'] }) {
  const labels = { requests: 'Requests', failures: 'Failures', users: 'Distinct users' };
  let sortKey = null;
  const tbody = h('tbody');
  const headers = {};
  const maxOf = (k) => Math.max(0, ...rows.map((r) => r[k] || 0));

  const fill = () => {
    clear(tbody);
    const sorted = sortKey ? [...rows].sort((a, b) => (b[sortKey] || 0) - (a[sortKey] || 0)) : rows;
    if (!sorted.length) {
      tbody.appendChild(h('tr', null, h('td', { class: 'empty', colspan: 1 + numbers.length + extra.length }, 'Nothing in this range.')));
    }
    for (const r of sorted) {
      tbody.appendChild(h('tr', null,
        h('th', { scope: 'row', class: 'wrap' }, h('a', { href: link(r) }, r.key)),
        numbers.map((k) => td([
          h('span', { class: 'bar-num' }, num(r[k])),
          bar(r[k] || 0, maxOf(k), k === 'failures' ? 'bad' : ''),
        ], { num: true })),
        extra.map((c) => td(c.cell(r), { num: c.num }))));
    }
    for (const [k, thEl] of Object.entries(headers)) {
      if (k === sortKey) thEl.setAttribute('aria-sort', 'descending');
      else thEl.removeAttribute('aria-sort');
    }
  };

  const headRow = h('tr', null, h('th', { scope: 'col' }, keyLabel));
  for (const k of numbers) {
    const btn = h('button', { type: 'button', class: 'sort', title: `Sort by ${labels[k].toLowerCase()}` }, labels[k]);
    btn.addEventListener('click', () => { sortKey = k; fill(); });
    headers[k] = h('th', { scope: 'col', class: 'num' }, btn);
    headRow.appendChild(headers[k]);
  }
  for (const c of extra) headRow.appendChild(h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label));
  fill();
  return h('div', { class: 'table-wrap' }, h('table', { class: 'top' }, h('caption', null, caption), h('thead', null, headRow), tbody));
}

async function topPage(main, params, { title, segments, sections }) {
  const win = windowOf(params);
  const head = () => [h('h1', { tabindex: '-1' }, title), rangePicker(segments, params, win)];
  setMain(main, ...head(), loading());
  try {
    const results = await Promise.all(sections.map((s) => getJson(`/api/top/${s.kind}`, { from: win.from, to: win.to, limit: s.limit || 10, ...(s.query || {}) })));
    setMain(main, ...head(), ...sections.map((s, i) => h('section', { class: 'top-section' }, topTable({ ...s.table(win), rows: results[i].rows || [] }))));
  } catch (e) {
    setMain(main, ...head(), errorBox(e));
  }
  return null;
}

const asnColumns = [
  { label: 'Country', cell: (r) => country(r.country) },
  { label: 'ASN', num: true, cell: (r) => (r.asn ? `AS${r.asn}` : '–') },
  { label: 'Network', cell: (r) => r.as_org || '–' },
];

export function endpoints(main, { params }) {
  return topPage(main, params, {
    title: 'Endpoints',
    segments: ['endpoints'],
    sections: [
      { kind: 'endpoints', table: (win) => ({ caption: 'Top endpoints (URL template)', keyLabel: 'Template', link: (r) => href('search', { ...carry(win), template: r.key }) }) },
      { kind: 'failures', table: (win) => ({ caption: 'Endpoints with the most failures', keyLabel: 'Template', link: (r) => href('search', { ...carry(win), template: r.key }) }) },
      { kind: 'assets', table: (win) => ({ caption: 'Top assets', keyLabel: 'Asset', link: (r) => href('search', { ...carry(win), asset: r.key }) }) },
    ],
  });
}

export function users(main, { params }) {
  return topPage(main, params, {
    title: 'Users and credentials',
    segments: ['users'],
    sections: [
      { kind: 'users', limit: 20, table: (win) => ({ caption: 'Most active users', keyLabel: 'User', numbers: ['requests', 'failures'], link: (r) => href(['user', r.key], win.range ? { range: win.range } : carry(win)) }) },
      { kind: 'credentials', limit: 20, table: (win) => ({ caption: 'Most used credentials (fingerprints)', keyLabel: 'Credential fingerprint', link: (r) => href('search', { ...carry(win), credential: r.key }) }) },
    ],
  });
}

export function clients(main, { params }) {
  return topPage(main, params, {
    title: 'Clients',
    segments: ['clients'],
    sections: [
      { kind: 'clients', limit: 25, table: (win) => ({ caption: 'Top client addresses', keyLabel: 'Client address', link: (r) => href('search', { ...carry(win), client: r.key }), extra: asnColumns }) },
    ],
  });
}

/** One user: where they came from (top clients) and what they did (their requests). */
export async function user(main, { params, parts }) {
  const name = parts[1] || '';
  const win = windowOf(params);
  const segs = ['user', name];
  const head = () => [
    h('h1', { tabindex: '-1' }, 'User ', h('span', { class: 'key' }, name)),
    rangePicker(segs, params, win),
  ];
  setMain(main, ...head(), loading());
  try {
    const [src, recs] = await Promise.all([
      getJson('/api/top/clients', { from: win.from, to: win.to, limit: 10, user: name }),
      getJson('/api/records', { from: win.from, to: win.to, user: name, limit: 50, offset: 0 }),
    ]);
    const all = href('search', { from: win.from, to: win.to, user: name });
    const t = recordsTable(recs.records || [], { caption: `Requests by ${name}`, empty: 'No requests by this user in this range.' });
    setMain(main, ...head(),
      h('section', { class: 'top-section' }, topTable({
        caption: `Where ${name} came from`, keyLabel: 'Client address', rows: src.rows || [], numbers: ['requests', 'failures'],
        link: (r) => href('search', { from: win.from, to: win.to, user: name, client: r.key }), extra: asnColumns,
      })),
      h('section', null,
        h('h2', null, 'Timeline'),
        h('p', null, `${num(recs.total)} requests in this range; the latest ${Math.min(50, (recs.records || []).length)} below. `,
          h('a', { href: all }, 'Open in Search (filters, paging, export)')),
        t.el));
  } catch (e) {
    setMain(main, ...head(), errorBox(e));
  }
  return null;
}

export function fmtValue(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
