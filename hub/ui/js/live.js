// One EventSource on /api/live for the whole page, shared by the views that
// want new records (overview counts, the tail). It keeps the latest records so
// the tail view has something to show when opened.

import { getJson } from './api.js';

const KEEP = 500;
const listeners = new Set();
const stateListeners = new Set();
const recent = []; // newest first
let source = null;
let state = 'off'; // off | connecting | open | retrying
const seen = new Set(); // stream#seq of the records in `recent`

function remember(rec) {
  seen.add(`${rec.stream}#${rec.seq}`);
}

function setState(s) {
  state = s;
  for (const fn of stateListeners) fn(s);
}

function start() {
  if (source) return;
  setState('connecting');
  source = new EventSource('/api/live', { withCredentials: true });
  source.addEventListener('open', () => setState('open'));
  source.addEventListener('record', (ev) => {
    let rec;
    try { rec = JSON.parse(ev.data); } catch { return; }
    if (!rec || typeof rec !== 'object') return;
    const id = `${rec.stream}#${rec.seq}`;
    if (seen.has(id)) return;
    remember(rec);
    recent.unshift(rec);
    while (recent.length > KEEP) {
      const old = recent.pop();
      seen.delete(`${old.stream}#${old.seq}`);
    }
    for (const fn of listeners) {
      try { fn(rec); } catch (e) { console.error(e); }
    }
  });
  source.addEventListener('error', () => {
    // EventSource hides the HTTP status: ask an API route, which sends us to
    // the login page if the session is gone; otherwise the browser retries.
    setState(source && source.readyState === EventSource.CLOSED ? 'off' : 'retrying');
    getJson('/api/alerts').catch(() => {});
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      setTimeout(start, 5000);
    }
  });
}

/** Calls fn(record) for every new record until the returned function is called. */
export function subscribe(fn) {
  start();
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Calls fn(state) now and on every change of the connection's state. */
export function onState(fn) {
  start();
  stateListeners.add(fn);
  fn(state);
  return () => stateListeners.delete(fn);
}

/**
 * The latest records, newest first. Before any arrived live, fills itself from
 * /api/records so a tail opened on a quiet system is not empty.
 */
export async function recentRecords(n) {
  if (!recent.length) {
    try {
      const res = await getJson('/api/records', { limit: Math.min(n, 100), offset: 0 });
      if (!recent.length) {
        for (const r of res.records || []) { remember(r); recent.push(r); }
      }
    } catch { /* the tail fills from the stream */ }
  }
  return recent.slice(0, n);
}
