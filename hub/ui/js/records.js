// The requests table, shared by Search, a user's page, the overview's tail and
// the live tail. Every value is text (textContent); links are built from
// encoded route segments.

import { h, td, fmtTs, fmtDuration, statusBadge, country, clear } from './dom.js';
import { href } from './route.js';

export const COLUMNS = [
  { label: 'Time (UTC)' },
  { label: 'Method' },
  { label: 'Host' },
  { label: 'Path' },
  { label: 'Status' },
  { label: 'User' },
  { label: 'Client' },
  { label: 'Country' },
  { label: 'Asset' },
  { label: 'Duration', num: true },
  { label: 'Record' },
];

export function recordHref(rec) {
  return href(['record', rec.stream, rec.seq]);
}

export function recordRow(rec, { fresh } = {}) {
  const tr = h('tr', { class: fresh ? 'fresh' : null },
    h('th', { scope: 'row', class: 'nowrap c-ts' }, h('a', { href: recordHref(rec) }, fmtTs(rec.ts))),
    td(rec.method ?? '–', { class: 'c-method' }),
    td(rec.host ?? '–', { class: 'wrap c-host' }),
    td(h('span', { class: 'path', title: rec.template && rec.template !== rec.path ? `template: ${rec.template}` : null }, rec.path ?? '–'), { class: 'wrap c-path' }),
    td(statusBadge(rec.status), { class: 'c-status' }),
    td(rec.user ? h('a', { href: href(['user', rec.user]) }, rec.user) : h('span', { class: 'muted' }, 'anonymous'), { class: 'c-user' }),
    td(rec.client ? h('a', { href: href('search', { client: rec.client }) }, rec.client) : '–', { class: 'c-client' }),
    td(country(rec.country), { class: 'c-country' }),
    td(rec.asset ? h('a', { href: href('search', { asset: rec.asset }) }, rec.asset) : '–', { class: 'c-asset' }),
    td(fmtDuration(rec.duration_ns), { class: 'num c-duration' }),
    td(h('a', { href: recordHref(rec), class: 'nowrap', 'aria-label': `record ${rec.stream} #${rec.seq}${rec.covered ? ', covered by a checkpoint' : ', not yet covered by a checkpoint'}` },
      `${rec.stream}#${rec.seq}`,
      rec.covered ? h('span', { class: 'covered', title: 'covered by a signed checkpoint', 'aria-hidden': 'true' }, ' ✓') : null), { class: 'c-record' }),
  );
  return tr;
}

/** A requests table; `prepend(rec)` adds a row on top (live views). */
export function recordsTable(records, { caption, captionHidden, empty, max } = {}) {
  const tbody = h('tbody');
  const emptyRow = h('tr', { class: 'empty-row' }, h('td', { colspan: COLUMNS.length, class: 'empty' }, empty || 'No requests match.'));
  const tableEl = h('table', { class: 'records' },
    caption ? h('caption', { class: captionHidden ? 'visually-hidden' : null }, caption) : null,
    h('thead', null, h('tr', null, COLUMNS.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    tbody);
  const fill = (recs) => {
    clear(tbody);
    if (!recs.length) tbody.appendChild(emptyRow);
    for (const r of recs) tbody.appendChild(recordRow(r));
  };
  fill(records);
  return {
    el: h('div', { class: 'table-wrap' }, tableEl),
    tbody,
    prepend(rec) {
      if (emptyRow.parentNode) emptyRow.remove();
      tbody.insertBefore(recordRow(rec, { fresh: true }), tbody.firstChild);
      while (max && tbody.rows.length > max) tbody.deleteRow(-1);
    },
    fill,
  };
}
