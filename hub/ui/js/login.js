// The login form: POST /login with {"password": "..."}; 204 sets the session
// cookie and we go to the dashboard; 401 and 429 show the hub's error text.

const form = document.getElementById('login-form');
const input = document.getElementById('password');
const error = document.getElementById('login-error');
const button = form.querySelector('button[type="submit"]');

function showError(text) {
  error.textContent = text;
  error.classList.remove('hidden');
  input.setAttribute('aria-invalid', 'true');
  input.focus();
  input.select();
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  error.classList.add('hidden');
  button.disabled = true;
  try {
    const res = await fetch('/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ password: input.value }),
    });
    if (res.ok) {
      location.assign('/');
      return;
    }
    let msg = '';
    try { msg = (await res.json()).error || ''; } catch { /* no JSON body */ }
    if (res.status === 429) {
      const wait = res.headers.get('Retry-After');
      showError(msg || `Too many attempts: wait${wait ? ` ${wait} s` : ' a while'} and try again.`);
    } else if (res.status === 401) {
      showError(msg || 'Wrong password.');
    } else {
      showError(msg || `Sign-in failed (the hub answered ${res.status}).`);
    }
  } catch (e) {
    showError(`The hub could not be reached (${e.message}).`);
  } finally {
    button.disabled = false;
  }
});
