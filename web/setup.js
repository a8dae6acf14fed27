// The first run: the setup code and the admin password, sent as JSON so that a
// refusal shows beside its field. Without script the form posts by itself and comes
// back with ?error=<status>.

const form = document.getElementById('setup');
const fields = ['code', 'password', 'repeat'];
const general = document.getElementById('error');

function show(field, message) {
  const box = field ? document.getElementById(`${field}-error`) : general;
  box.textContent = message;
  box.hidden = false;
  if (field) document.getElementById(field).setAttribute('aria-invalid', 'true');
}

function clear() {
  for (const field of fields) {
    document.getElementById(`${field}-error`).hidden = true;
    document.getElementById(field).removeAttribute('aria-invalid');
  }
  general.hidden = true;
}

const byStatus = {
  403: ['code', 'Wrong setup code.'],
  429: ['code', 'Too many wrong codes from this address. Wait a minute and try again.'],
  400: ['password', 'The password needs at least 8 characters.'],
  409: [null, 'This camera already has an admin. Log in instead.'],
};
const previous = byStatus[new URLSearchParams(location.search).get('error')];
if (previous) show(...previous);

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clear();
  const code = form.code.value.trim();
  const password = form.password.value;
  if (!code) return show('code', 'Enter the setup code.');
  if (password.length < 8) return show('password', 'The password needs at least 8 characters.');
  if (password !== form.repeat.value) return show('repeat', 'The two passwords differ.');
  const button = document.getElementById('submit');
  button.disabled = true;
  try {
    const response = await fetch('/api/setup', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code, password }),
    });
    if (response.ok) {
      location.assign('/welcome');
      return;
    }
    const text = await response.text();
    let answer = null;
    try { answer = JSON.parse(text); } catch { /* a plain-text refusal */ }
    if (answer && answer.error) show(answer.field, answer.error);
    else show(null, text.trim() || `refused (${response.status})`);
  } catch (error) {
    show(null, `The camera did not answer: ${error.message}`);
  } finally {
    button.disabled = false;
  }
});
