// The settings page's "Software update" section: upload a signed bundle, then follow
// the updater through the daemon's restart to its verdict (kept or rolled back).

const $ = (id) => document.getElementById(id);

const VERDICTS = {
  kept: (last) => `Updated to ${last.version}` + (last.reason ? ` (${last.reason})` : ''),
  rolled_back: (last) => `The update to ${last.version} was rolled back: ${last.reason}`,
  refused: (last) => `An update was refused: ${last.reason}`,
  failed: (last) => `An update failed: ${last.reason}`,
  installing: (last) => `Installing ${last.version}…`,
  switched: (last) => `Starting ${last.version}…`,
};

async function readState() {
  const response = await fetch('/api/update', { cache: 'no-store' });
  if (!response.ok) throw new Error(`refused (${response.status})`);
  return response.json();
}

function show(state) {
  $('update-running').textContent = `peercam ${state.running}` +
    (state.release === 'factory' ? ' (as installed)' : ` (update ${state.release})`);
  const last = state.last;
  const when = last && last.finished ? ` — ${new Date(last.finished * 1000).toLocaleString()}` : '';
  $('update-last').textContent = last ? VERDICTS[last.state](last) + when : 'No update yet.';
  $('update-last').dataset.state = last ? last.state : '';
}

// The daemon restarts (twice, when it rolls back) while the updater works: keep
// asking until the outcome is newer than the upload.
async function follow(since) {
  for (let attempt = 0; attempt < 600; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    try {
      const state = await readState();
      show(state);
      const last = state.last;
      if (last && last.started >= since && last.finished) return;
    } catch { /* the daemon is restarting */ }
  }
  $('update-last').textContent = 'No answer from the updater after ten minutes.';
}

$('update-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const file = $('update-file').files[0];
  const error = $('update-error');
  error.hidden = true;
  if (!file) return;
  const since = Date.now() / 1000 - 5;
  $('update-last').textContent = `Uploading ${file.name}…`;
  const response = await fetch('/api/update', {
    method: 'POST',
    headers: { 'Content-Type': 'application/octet-stream' },
    body: file,
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    error.textContent = answer.error || `refused (${response.status})`;
    error.hidden = false;
    show(await readState());
    return;
  }
  $('update-last').textContent = `Checked: peercam ${answer.version}. Installing; the camera restarts…`;
  await follow(since);
});

readState().then(show).catch(() => {});
