// DOM helpers. Record fields are attacker-controlled (a path, a user agent, a
// user name can hold anything), so every piece of data goes in as textContent or
// as an attribute set through the DOM API: this module never touches innerHTML.

/**
 * h('a', {href: '#/x', class: 'btn'}, 'text', childNode, [more, children])
 * Attributes: `class`, `text` (textContent), `on` ({click: fn}), `dataset`,
 * any other key set with setAttribute (null/undefined/false skipped).
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Numbers with thousands separators; '–' for null. */
export function num(n) {
  if (n === null || n === undefined) return '–';
  return Number(n).toLocaleString('en-US');
}

/** Milliseconds of an RFC 3339 string, nanoseconds tolerated (cut to ms). */
export function tsMillis(ts) {
  if (!ts) return NaN;
  const m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$/.exec(ts);
  if (!m) return Date.parse(ts);
  const frac = m[2] ? m[2].slice(0, 4) : '';
  return Date.parse(m[1] + frac + m[3]);
}

/** Display form of a timestamp: UTC, "2026-11-22 22:35:01.985". */
export function fmtTs(ts) {
  const ms = typeof ts === 'number' ? ts : tsMillis(ts);
  if (!Number.isFinite(ms)) return ts ? String(ts) : '–';
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

/** RFC 3339 (ms precision, UTC) of epoch milliseconds. */
export function iso(ms) {
  return new Date(ms).toISOString();
}

export function fmtDuration(ns) {
  if (ns === null || ns === undefined) return '–';
  if (ns < 1e3) return `${ns} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(1)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

export function statusClass(status) {
  if (status === null || status === undefined) return 'other';
  const c = Math.floor(Number(status) / 100);
  return c >= 2 && c <= 5 ? `s${c}xx` : 'other';
}

/** A status code as a coloured badge (colour plus the number: never colour alone). */
export function statusBadge(status) {
  return h('span', { class: `badge ${statusClass(status)}` }, status ?? '–');
}

/** Country code as text with its name for screen readers and the tooltip. */
const regionNames = (() => {
  try { return new Intl.DisplayNames(['en'], { type: 'region' }); } catch { return null; }
})();
export function country(code) {
  if (!code) return h('span', { class: 'muted' }, '–');
  let name = code;
  try { name = regionNames ? regionNames.of(code) || code : code; } catch { /* not a region */ }
  return h('abbr', { title: name, class: 'country' }, code);
}

/** A table with a caption, <th scope="col"> headers and rows built by rowFn. */
export function table({ caption, columns, rows, rowFn, empty, captionHidden }) {
  const thead = h('thead', null, h('tr', null, columns.map((c) =>
    h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label))));
  const tbody = h('tbody');
  if (!rows.length) {
    tbody.appendChild(h('tr', null, h('td', { colspan: columns.length, class: 'empty' }, empty || 'Nothing in this range.')));
  } else {
    for (const r of rows) tbody.appendChild(rowFn(r));
  }
  return h('div', { class: 'table-wrap' },
    h('table', null,
      caption ? h('caption', { class: captionHidden ? 'visually-hidden' : null }, caption) : null,
      thead, tbody));
}

/** A cell; `num: true` right-aligns it, `class` adds classes. */
export function td(content, opts = {}) {
  const cls = [opts.num ? 'num' : '', opts.class || ''].join(' ').trim();
  return h('td', { class: cls || null }, content);
}

/** A <th scope="row"> cell (the row's key). */
export function th(content) {
  return h('th', { scope: 'row' }, content);
}

/** A relative bar behind a number (width set through the CSSOM: CSP-safe). */
export function bar(value, max, cls = '') {
  const pct = max > 0 && value > 0 ? Math.max(1, Math.round((value / max) * 100)) : 0;
  const fill = h('span', { class: `bar-fill ${cls}` });
  fill.style.width = `${pct}%`;
  return h('span', { class: 'bar', 'aria-hidden': 'true' }, fill);
}

export function errorBox(err) {
  return h('div', { class: 'error', role: 'alert' }, err && err.message ? err.message : String(err));
}

export function loading() {
  return h('p', { class: 'muted loading', role: 'status' }, 'Loading…');
}
