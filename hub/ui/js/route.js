// Hash routes: "#/search?user=alice&status=4xx". Filters live in the URL so a
// link to any view can be pasted in an incident channel.

import { h, clear } from './dom.js';
import { RANGES, toQuery } from './api.js';

export function current() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const qi = raw.indexOf('?');
  const path = qi < 0 ? raw : raw.slice(0, qi);
  const params = new URLSearchParams(qi < 0 ? '' : raw.slice(qi + 1));
  const parts = path.split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { path, parts, params };
}

/** "#/path?query" for a path (segments are encoded) and a params object. */
export function href(segments, params) {
  const path = '/' + [].concat(segments).filter((s) => s !== '' && s !== null && s !== undefined)
    .map((s) => encodeURIComponent(String(s))).join('/');
  const q = params ? toQuery(params) : '';
  return `#${path}${q ? `?${q}` : ''}`;
}

export function go(segments, params) {
  location.hash = href(segments, params);
}

/** Params of the current view as a plain object. */
export function paramsObject(params) {
  const o = {};
  for (const [k, v] of params) o[k] = v;
  return o;
}

/**
 * The time-range picker: links (so they can be shared and opened in a tab)
 * to the same view with another `range`; an explicit from/to is shown with a
 * link back to the relative ranges.
 */
export function rangePicker(segments, params, win) {
  const base = paramsObject(params);
  delete base.from; delete base.to; delete base.offset;
  const list = h('ul', { class: 'range-list' });
  for (const [key, , label] of RANGES) {
    const a = h('a', { href: href(segments, { ...base, range: key }), class: 'range', title: `last ${label}` }, key);
    if (win.range === key) a.setAttribute('aria-current', 'true');
    list.appendChild(h('li', null, a));
  }
  const group = h('div', { class: 'range-picker', role: 'group', 'aria-label': 'Time range' },
    h('span', { class: 'range-label' }, 'Last'), list);
  if (!win.range) {
    group.appendChild(h('span', { class: 'range-custom' },
      `${win.from} → ${win.to} `,
      h('a', { href: href(segments, { ...base, range: '1h' }) }, 'back to relative ranges')));
  }
  return group;
}

export function setMain(main, ...nodes) {
  clear(main);
  for (const n of nodes) if (n) main.appendChild(n);
}
