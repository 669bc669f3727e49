// tracer hub dashboard: the router. Each view renders into a fresh container
// so a slow answer for a view the user already left lands nowhere.

import { h, clear } from './js/dom.js';
import { logout } from './js/api.js';
import { current } from './js/route.js';
import { overview } from './js/overview.js';
import { endpoints, users, user, clients } from './js/top.js';
import { alerts } from './js/alerts.js';
import { search, liveTail } from './js/search.js';
import { record } from './js/record.js';
import { integrity } from './js/integrity.js';
import { rules } from './js/rules.js';

const ROUTES = {
  '': ['Overview', overview, ''],
  endpoints: ['Endpoints', endpoints, 'endpoints'],
  users: ['Users', users, 'users'],
  user: ['User', user, 'users'],
  clients: ['Clients', clients, 'clients'],
  search: ['Search', search, 'search'],
  record: ['Request', record, 'search'],
  integrity: ['Integrity', integrity, 'integrity'],
  alerts: ['Alerts', alerts, 'alerts'],
  rules: ['Detection rules', rules, 'alerts'],
  live: ['Live tail', liveTail, 'live'],
};

const main = document.getElementById('main');
let cleanup = null;
let token = 0;
let first = true;

async function render() {
  const route = current();
  const [title, view, navKey] = ROUTES[route.parts[0] || ''] || ['Not found', notFound, null];
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  const my = ++token;
  const shown = route.parts[0] === 'alerts' && route.parts[1] ? `Alert #${route.parts[1]}` : title;
  document.title = `${shown} · tracer hub`;
  for (const a of document.querySelectorAll('.site-nav a[data-nav]')) {
    if (a.dataset.nav === navKey) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const container = h('div', { class: 'view' });
  clear(main).appendChild(container);
  const moveFocus = !first;
  first = false;
  let done;
  try {
    done = await view(container, route);
  } catch (e) {
    console.error(e);
    container.appendChild(h('div', { class: 'error', role: 'alert' }, `This view failed: ${e.message}`));
  }
  if (my !== token) {
    if (typeof done === 'function') done();
    return;
  }
  if (typeof done === 'function') cleanup = done;
  if (moveFocus) {
    const h1 = container.querySelector('h1');
    if (h1) h1.focus({ preventScroll: false });
  }
}

function notFound(container) {
  container.appendChild(h('h1', { tabindex: '-1' }, 'Not found'));
  container.appendChild(h('p', null, 'No such view. ', h('a', { href: '#/' }, 'Go to the overview')));
}

// After a login, come back to the link the user opened.
try {
  const back = sessionStorage.getItem('tracer.returnTo');
  sessionStorage.removeItem('tracer.returnTo');
  if (back && back.startsWith('#/') && (!location.hash || location.hash === '#/')) location.replace(back);
} catch { /* storage may be off */ }

document.getElementById('logout').addEventListener('click', logout);
window.addEventListener('hashchange', render);
render();
