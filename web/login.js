// The login form posts by itself (no script needed); this only carries the page the
// viewer wanted through the login, and says why a previous attempt failed.

const params = new URLSearchParams(location.search);
const next = params.get('next');
// The server checks it too; a browser drops tabs and line breaks and reads \ as /.
if (next && /^\/(?![/\\])[!-~]*$/.test(next) && !next.includes('\\')) {
  document.getElementById('next').value = next;
}
const reasons = {
  wrong: 'Wrong user name or password.',
  throttled: 'Too many failed attempts from this address. Wait a minute and try again.',
};
const reason = reasons[params.get('error')];
if (reason) {
  const box = document.getElementById('error');
  box.textContent = reason;
  box.hidden = false;
}
