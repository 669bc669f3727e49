// Talking to the hub: same origin, session cookie. Any 401 from /api means the
// session is gone: remember where the user was and go to the login page.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function toLogin() {
  try {
    if (location.hash && location.hash !== '#/') sessionStorage.setItem('tracer.returnTo', location.hash);
  } catch { /* storage may be off */ }
  location.assign('/login');
}

/** GET a JSON document from /api; throws ApiError with the hub's error text. */
export async function getJson(path, params) {
  const url = params ? `${path}?${toQuery(params)}` : path;
  let res;
  try {
    res = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  } catch (e) {
    throw new ApiError(0, `The hub could not be reached (${e.message}).`);
  }
  if (res.status === 401) {
    toLogin();
    throw new ApiError(401, 'Signed out: going to the login page.');
  }
  if (!res.ok) {
    let msg = '';
    try { msg = (await res.json()).error || ''; } catch { /* not JSON */ }
    throw new ApiError(res.status, `The hub answered ${res.status}${msg ? `: ${msg}` : ''} (${path}).`);
  }
  return res.json();
}

/** URLSearchParams from an object, skipping empty values. */
export function toQuery(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === '') continue;
    q.set(k, String(v));
  }
  return q.toString();
}

export async function logout() {
  try { await fetch('/logout', { method: 'POST', credentials: 'same-origin' }); } catch { /* going anyway */ }
  location.assign('/login');
}

// ---- Time ranges -------------------------------------------------------------

export const RANGES = [
  ['15m', 15 * 60e3, '15 minutes'],
  ['1h', 3600e3, '1 hour'],
  ['6h', 6 * 3600e3, '6 hours'],
  ['24h', 24 * 3600e3, '24 hours'],
  ['7d', 7 * 86400e3, '7 days'],
  ['30d', 30 * 86400e3, '30 days'],
];
export const DEFAULT_RANGE = '1h';

/**
 * The window a page shows, from its URL parameters: explicit `from`/`to`
 * (RFC 3339) win, else `range` (one of RANGES) back from now.
 */
export function windowOf(params) {
  const from = params.get('from');
  const to = params.get('to');
  if (from) {
    return { from, to: to || new Date().toISOString(), range: null };
  }
  const key = RANGES.some((r) => r[0] === params.get('range')) ? params.get('range') : DEFAULT_RANGE;
  const span = RANGES.find((r) => r[0] === key)[1];
  const now = Date.now();
  return { from: new Date(now - span).toISOString(), to: new Date(now).toISOString(), range: key };
}
