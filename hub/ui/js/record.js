// One request: who, what, when, from where, which process, and its proof (hash
// chain position and covering signed checkpoint). Every value is shown as text.

import { h, fmtTs, statusBadge, country, loading, errorBox, th, td } from './dom.js';
import { getJson } from './api.js';
import { href, setMain } from './route.js';
import { fmtValue } from './top.js';

const CHAIN_TEXT = {
  linked: 'linked: its prev hash matches the record before it',
  break: 'break: the chain does not link here (modified, inserted or removed records)',
  gap: 'gap: records before this one are missing',
  forged: 'forged: a checkpoint signed with the stream\'s key names another line at this seq; the sensor did not write this one',
  restored: 'restored: the sensor\'s own line, to which its next signed checkpoint chains, in place of a forged one (kept among the conflicts)',
  unverified: 'unverified: not yet checked against the chain',
};

function kvTable(caption, obj, keys) {
  const ks = keys || Object.keys(obj || {});
  return h('div', { class: 'table-wrap' }, h('table', { class: 'kv' },
    h('caption', null, caption),
    h('thead', { class: 'visually-hidden' }, h('tr', null, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Value'))),
    h('tbody', null, ks.length
      ? ks.map((k) => h('tr', null, th(h('code', null, k)), td(valueNode(obj[k]), { class: 'wrap value' })))
      : h('tr', null, h('td', { colspan: 2, class: 'empty' }, 'None.')))));
}

function valueNode(v) {
  if (typeof v === 'number' || typeof v === 'boolean') return h('code', null, String(v));
  return fmtValue(v);
}

const IDENTITY = /^(user\.|audit\.auth\.|audit\.credential\.|audit\.session\.|client\.|user_agent\.)/;
const PROCESS = /^(process\.|thread\.id$|container\.|server\.|network\.local\.)/;

export async function record(main, { parts }) {
  const stream = parts[1] || '';
  const seq = parts[2] || '';
  const title = () => h('h1', { tabindex: '-1' }, 'Request ', h('span', { class: 'key' }, `${stream}#${seq}`));
  setMain(main, title(), loading());
  let r;
  try {
    r = await getJson(`/api/records/${encodeURIComponent(stream)}/${encodeURIComponent(seq)}`);
  } catch (e) {
    setMain(main, title(), errorBox(e));
    return null;
  }
  const f = r.fields || {};
  const en = r.enrichment || {};
  const p = r.proof || {};
  const user = f['user.name'] || en.user || null;
  const client = f['client.address'] || null;
  const n = Number(seq);

  const summary = h('p', { class: 'summary' },
    h('strong', null, f['http.request.method'] || '?'), ' ',
    h('span', { class: 'path' }, `${f['server.address'] || ''}${f['url.path'] || ''}${f['url.query'] ? `?${f['url.query']}` : ''}`), ' → ',
    statusBadge(f['http.response.status_code']),
    ' by ', user ? h('a', { href: href(['user', user]) }, user) : h('span', { class: 'muted' }, 'anonymous'),
    ' from ', client ? h('a', { href: href('search', { client }) }, client) : '–', ' ', country(en['client.geo.country_iso_code'] || en.country),
    ' at ', h('time', { datetime: f.timestamp || '' }, `${fmtTs(f.timestamp)} UTC`));

  const links = h('ul', { class: 'quick-links', 'aria-label': 'Related' },
    user ? h('li', null, h('a', { href: href('search', { user }) }, 'All requests by this user')) : null,
    client ? h('li', null, h('a', { href: href('search', { client }) }, 'All requests from this client')) : null,
    f['audit.credential.fingerprint'] ? h('li', null, h('a', { href: href('search', { credential: f['audit.credential.fingerprint'] }) }, 'All requests with this credential')) : null,
    Number.isFinite(n) && n > 0 ? h('li', null, h('a', { href: href(['record', stream, n - 1]) }, '← Previous in stream')) : null,
    Number.isFinite(n) ? h('li', null, h('a', { href: href(['record', stream, n + 1]) }, 'Next in stream →')) : null);

  const chain = p.chain || 'unverified';
  const cp = p.checkpoint;
  const proofRows = [
    ['Stream', h('a', { href: href('search', { stream: p.stream || stream }) }, p.stream || stream)],
    ['Seq', h('code', null, String(p.seq ?? seq))],
    ['Hash', h('code', { class: 'hash' }, p.hash || '–')],
    ['Prev hash', h('code', { class: 'hash' }, p.prev_hash || '–')],
    ['Chain', h('span', { class: `chain chain-${['linked', 'restored', 'break', 'gap', 'forged', 'unverified'].includes(chain) ? chain : 'unverified'}` }, CHAIN_TEXT[chain] || chain)],
    ['Checkpoint', cp
      ? h('span', null, `seq ${cp.seq} · key `, h('code', null, cp.key_fingerprint || '–'), ' · signature ',
        h('span', { class: cp.verified ? 'ok' : 'bad' }, cp.verified ? 'verified: yes' : 'verified: NO'))
      : h('span', { class: 'warn' }, 'none yet: no signed checkpoint covers this record')],
    ['Checkpoint hash', cp ? h('code', { class: 'hash' }, cp.hash || '–') : '–'],
  ];
  const proof = h('section', { class: `proof proof-${chain}`, 'aria-labelledby': 'proof-h' },
    h('h2', { id: 'proof-h' }, 'Proof'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'kv' },
      h('caption', { class: 'visually-hidden' }, 'Proof of this record'),
      h('tbody', null, proofRows.map(([k, v]) => h('tr', null, th(k), td(v, { class: 'wrap value' })))))),
    h('p', null, h('a', { href: href('integrity') }, 'Integrity of all streams')));

  const keys = Object.keys(f);
  setMain(main, title(), summary, links, proof,
    h('section', { class: 'cols' },
      kvTable('Identity', f, keys.filter((k) => IDENTITY.test(k))),
      kvTable('Serving process', f, keys.filter((k) => PROCESS.test(k)))),
    h('section', null, h('h2', null, 'All fields'),
      kvTable('Fields as recorded by the sensor', f),
      kvTable('Added by the hub (enrichment)', en)));
  return null;
}
