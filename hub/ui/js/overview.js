// Overview: totals, requests over time by status class, failure spikes, and a
// short live tail. New records from /api/live bump the counts and the chart at
// once; the distinct counts (users, clients, hosts) are fetched again a few
// seconds later, since only the hub knows whether a user is new.

import { h, num, fmtTs, tsMillis, iso, loading, errorBox, table, td, th } from './dom.js';
import { getJson, windowOf } from './api.js';
import { href, rangePicker, setMain } from './route.js';
import { statusChart, CLASSES } from './chart.js';
import { subscribe, onState, recentRecords } from './live.js';
import { recordsTable } from './records.js';

export function isFailure(rec) {
  return rec.status === null || rec.status === undefined || Number(rec.status) >= 400;
}

export async function overview(main, { params }) {
  const win = windowOf(params);
  const range = { from: win.from, to: win.to };
  const cleanups = [];
  setMain(main,
    h('h1', { tabindex: '-1' }, 'Overview'),
    rangePicker([''], params, win),
    loading());

  let totals; let ts; let latest;
  try {
    [totals, ts, latest] = await Promise.all([getJson('/api/totals', range), getJson('/api/timeseries', range), recentRecords(10)]);
  } catch (e) {
    setMain(main, h('h1', { tabindex: '-1' }, 'Overview'), rangePicker([''], params, win), errorBox(e));
    return null;
  }

  // Totals: each links to the view that explains it.
  const cards = [
    ['requests', 'Requests', href('search', range)],
    ['failures', 'Failures', href('search', { ...range, status: '5xx' })],
    ['users', 'Users', href('users', win.range ? { range: win.range } : range)],
    ['clients', 'Clients', href('clients', win.range ? { range: win.range } : range)],
    ['hosts', 'Hosts', href('integrity')],
    ['losses', 'Sensor losses', href('integrity')],
  ];
  const values = {};
  const dl = h('dl', { class: 'totals', 'aria-label': 'Totals for the range' });
  for (const [key, label, link] of cards) {
    values[key] = h('a', { href: link, class: 'total-value' }, num(totals[key]));
    dl.appendChild(h('div', { class: `total total-${key}${key === 'failures' && totals.failures > 0 ? ' bad' : ''}${key === 'losses' && totals.losses > 0 ? ' bad' : ''}` },
      h('dt', null, label), h('dd', null, values[key])));
  }
  const setTotals = (t) => {
    totals = t;
    for (const [key] of cards) values[key].textContent = num(t[key]);
  };

  // Chart.
  const chartBox = h('div', { class: 'chart', role: 'img', 'aria-label': 'Requests over time by status class; the data is in the table below the chart' });
  const spikes = ts.spikes || [];
  const step = ts.step_seconds || 60;
  const spikeList = spikes.length
    ? h('ul', { class: 'spikes' }, spikes.map((t) => {
      const ms = tsMillis(t);
      return h('li', null, h('a', { href: href('search', { from: iso(ms), to: iso(ms + step * 1000) }) }, fmtTs(ms)));
    }))
    : h('p', { class: 'muted' }, 'No failure spikes in this range.');

  const dataTable = table({
    caption: `Requests per ${step} s step`,
    columns: [{ label: 'Step (UTC)' }, ...CLASSES.map(([, l]) => ({ label: l, num: true }))],
    rows: ts.points || [],
    rowFn: (p) => h('tr', null, th(h('a', { href: href('search', { from: iso(tsMillis(p.t)), to: iso(tsMillis(p.t) + step * 1000) }) }, fmtTs(p.t))),
      CLASSES.map(([k]) => td(num(p[k] || 0), { num: true }))),
    empty: 'No requests in this range.',
  });

  // Live tail.
  const liveState = h('span', { class: 'live-state', role: 'status' });
  const tail = recordsTable(latest, { caption: 'Latest requests', captionHidden: true, empty: 'Waiting for requests…', max: 10 });

  setMain(main,
    h('h1', { tabindex: '-1' }, 'Overview'),
    rangePicker([''], params, win),
    h('section', { 'aria-labelledby': 'totals-h' }, h('h2', { id: 'totals-h', class: 'visually-hidden' }, 'Totals'), dl),
    h('section', { 'aria-labelledby': 'chart-h' },
      h('h2', { id: 'chart-h' }, 'Requests by status class'),
      h('p', { class: 'hint' }, 'Red bands mark failure spikes. Click a time to see its requests.'),
      chartBox,
      h('h3', null, 'Failure spikes'),
      spikeList,
      h('details', null, h('summary', null, 'Chart data as a table'), dataTable)),
    h('section', { 'aria-labelledby': 'tail-h' },
      h('h2', { id: 'tail-h' }, 'Latest requests ', liveState),
      h('p', null, h('a', { href: href('live') }, 'Open the live tail')),
      tail.el));

  const chart = statusChart(chartBox, ts, (fromMs, toMs) => {
    location.hash = href('search', { from: iso(fromMs), to: iso(toMs) });
  });
  cleanups.push(() => chart.destroy());

  cleanups.push(onState((s) => { liveState.textContent = liveLabel(s); liveState.dataset.state = s; }));

  let refetch = null;
  cleanups.push(subscribe((rec) => {
    tail.prepend(rec);
    // Only a relative range ("last 1h") grows with new records.
    if (!win.range) return;
    const t = tsMillis(rec.ts);
    if (!(t >= tsMillis(win.from))) return;
    chart.addRecord(rec);
    totals.requests += 1;
    if (isFailure(rec)) totals.failures += 1;
    setTotals(totals);
    if (!refetch) {
      refetch = setTimeout(async () => {
        refetch = null;
        try { setTotals(await getJson('/api/totals', { from: win.from, to: new Date().toISOString() })); } catch { /* keep counts */ }
      }, 5000);
    }
  }));
  cleanups.push(() => clearTimeout(refetch));
  return () => cleanups.forEach((f) => f());
}

export function liveLabel(s) {
  return { open: '● live', connecting: '○ connecting…', retrying: '○ reconnecting…', off: '○ offline' }[s] || s;
}
