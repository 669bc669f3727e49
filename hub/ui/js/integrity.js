// Integrity: one card per stream (records, sequence range, how far the chain is
// verified, checkpoints, breaks and gaps, sensor losses). Problems are red and
// say what they are in words, never by colour alone.

import { h, num, fmtTs, loading, errorBox, td, th } from './dom.js';
import { getJson } from './api.js';
import { href, setMain } from './route.js';

export async function integrity(main) {
  setMain(main, h('h1', { tabindex: '-1' }, 'Integrity'), loading());
  let res;
  try {
    res = await getJson('/api/integrity');
  } catch (e) {
    setMain(main, h('h1', { tabindex: '-1' }, 'Integrity'), errorBox(e));
    return null;
  }
  const streams = res.streams || [];
  const broken = streams.filter((s) => (s.breaks || []).length);
  const lossy = streams.filter((s) => (s.losses || []).some((l) => l.count > 0));

  const summary = h('p', { class: broken.length ? 'banner bad' : 'banner ok', role: 'status' },
    broken.length
      ? `${broken.length} of ${streams.length} streams have breaks or gaps: ${broken.map((s) => s.stream).join(', ')}.`
      : `${streams.length} streams, no breaks or gaps.`,
    lossy.length ? ` ${lossy.length} reported sensor losses.` : '',
    res.rejected ? ` ${num(res.rejected)} lines were rejected by the hub.` : '');

  const overviewTable = h('div', { class: 'table-wrap' }, h('table', null,
    h('caption', null, 'Streams'),
    h('thead', null, h('tr', null, ['Stream', 'Status', 'Records', 'First seq', 'Last seq', 'Verified through', 'Last seen (UTC)', 'Last checkpoint', 'Key', 'Breaks', 'Losses']
      .map((l, i) => h('th', { scope: 'col', class: [2, 3, 4, 5, 9, 10].includes(i) ? 'num' : null }, l)))),
    h('tbody', null, streams.length ? streams.map(streamRow) : h('tr', null, h('td', { colspan: 11, class: 'empty' }, 'No streams yet.')))));

  const details = streams.filter((s) => (s.breaks || []).length || (s.losses || []).length).map(streamDetails);

  setMain(main, h('h1', { tabindex: '-1' }, 'Integrity'), summary, overviewTable, ...details);
  return null;
}

function streamRow(s) {
  const breaks = (s.breaks || []).length;
  const lost = (s.losses || []).reduce((a, l) => a + (l.count || 0), 0);
  const behind = s.verified_through === null || s.verified_through === undefined || s.verified_through < s.last_seq;
  const status = breaks
    ? h('span', { class: 'badge bad' }, 'broken')
    : behind ? h('span', { class: 'badge warn' }, 'pending') : h('span', { class: 'badge ok' }, 'verified');
  return h('tr', { class: breaks ? 'row-bad' : null, id: `stream-${s.stream}` },
    th(h('a', { href: href('search', { stream: s.stream }) }, s.stream)),
    td(status),
    td(num(s.records), { num: true }),
    td(num(s.first_seq), { num: true }),
    td(num(s.last_seq), { num: true }),
    td(s.verified_through === null || s.verified_through === undefined ? 'not yet' : num(s.verified_through), { num: true }),
    td(fmtTs(s.last_seen), { class: 'nowrap' }),
    td(s.last_checkpoint ? `seq ${num(s.last_checkpoint.seq)} at ${fmtTs(s.last_checkpoint.ts)}` : h('span', { class: 'warn' }, 'none')),
    td(s.key ? h('code', null, s.key) : '–'),
    td(breaks ? jump(`breaks-${s.stream}`, num(breaks)) : '0', { num: true }),
    td(lost ? h('span', { class: 'bad' }, num(lost)) : '0', { num: true }));
}

/** A button that moves focus to a stream's breaks (a link would change the route). */
function jump(id, label) {
  const b = h('button', { type: 'button', class: 'link bad', title: 'show the breaks' }, label);
  b.addEventListener('click', () => {
    const target = document.getElementById(id);
    if (target) { target.scrollIntoView({ block: 'start' }); target.focus(); }
  });
  return b;
}

function streamDetails(s) {
  const hid = `breaks-${s.stream}`;
  const sec = h('section', { class: 'stream-detail', 'aria-labelledby': hid },
    h('h2', { id: hid, tabindex: '-1' }, 'Stream ', h('span', { class: 'key' }, s.stream)));
  if ((s.breaks || []).length) {
    sec.appendChild(h('div', { class: 'table-wrap' }, h('table', { class: 'breaks' },
      h('caption', null, `Breaks and gaps in ${s.stream}`),
      h('thead', null, h('tr', null, h('th', { scope: 'col', class: 'num' }, 'Seq'), h('th', { scope: 'col' }, 'Kind'), h('th', { scope: 'col' }, 'Detail'))),
      h('tbody', null, s.breaks.map((b) => h('tr', { class: 'row-bad' },
        h('th', { scope: 'row', class: 'num' }, h('a', { href: href(['record', s.stream, b.seq]) }, String(b.seq))),
        td(h('span', { class: 'badge bad' }, b.kind)),
        td(b.detail || '', { class: 'wrap' })))))));
  }
  if (s.conflicts_kept) {
    sec.appendChild(h('p', null, `${num(s.conflicts_kept)} conflicting lines of ${s.stream} are kept byte for byte: `,
      h('code', null, `tracer-hub conflicts --stream ${s.stream}`), ' prints them.'));
  }
  if ((s.losses || []).length) {
    sec.appendChild(h('div', { class: 'table-wrap' }, h('table', null,
      h('caption', null, `Sensor losses in ${s.stream}`),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Source'), h('th', { scope: 'col' }, 'Reason'), h('th', { scope: 'col', class: 'num' }, 'Count'))),
      h('tbody', null, s.losses.map((l) => h('tr', { class: l.count > 0 ? 'row-bad' : null },
        th(l.source), td(l.reason), td(num(l.count), { num: true })))))));
  }
  return sec;
}
