// The first run, after the admin password: name, network, picture, time zone,
// recording and notifications. Finish saves the settings in one go (PUT
// /api/settings, the daemon's own checks) and goes to the live view.

import { Notifications } from './notifications.js';

const $ = (id) => document.getElementById(id);
const say = (text) => { $('settings-status').textContent = text; };
let settings = null;

function running(section, key) {
  const written = settings.written[section] || {};
  return key in written ? written[key] : settings.running[section][key];
}

async function showNetwork() {
  const response = await fetch('/api/settings/network');
  const interfaces = response.ok ? await response.json() : [];
  $('network').replaceChildren(...(interfaces.length ? interfaces : [null]).map((link) => {
    const item = document.createElement('li');
    if (!link) {
      item.textContent = 'No network found besides this page\'s own connection.';
    } else if (link.wireless) {
      const { network, signal_dbm: signal } = link.wireless;
      item.textContent = `Wi-Fi ${link.name}: ${network ? `"${network}"` : 'connected'}`
        + `${signal !== null ? `, signal ${signal} dBm` : ''}; ${link.addresses.join(', ') || 'no address yet'}`;
    } else {
      item.textContent = `Wired ${link.name}: ${link.addresses.join(', ')}`;
    }
    return item;
  }));
}

function showPicture() {
  $('picture').src = `/snapshot.jpg?at=${Date.now()}`;
}

function showTimeZones() {
  const zones = Intl.supportedValuesOf ? Intl.supportedValuesOf('timeZone') : ['UTC'];
  const chosen = running('server', 'time_zone') || Intl.DateTimeFormat().resolvedOptions().timeZone;
  $('time-zone').replaceChildren(new Option("The system's", ''), ...zones.map((zone) => new Option(zone, zone)));
  $('time-zone').value = zones.includes(chosen) ? chosen : '';
}

async function showNotifications() {
  const notifications = new Notifications();
  await notifications.start();
  const show = () => { $('push-state').textContent = notifications.describe(); };
  show();
  $('push-enable').addEventListener('click', async () => {
    try {
      await notifications.enable();
    } catch (error) {
      $('push-state').textContent = error.message;
      return;
    }
    show();
  });
}

function changes() {
  const wanted = {
    'onvif.name': $('name').value.trim() || null,
    'mqtt.name': $('name').value.trim() || null,
    'camera.rotation': $('upside-down').checked ? 180 : 0,
    'camera.hflip': $('mirror').checked,
    'server.time_zone': $('time-zone').value || null,
    'recording.enabled': $('recording').checked,
    'motion.enabled': $('recording').checked || running('motion', 'enabled'),
  };
  const found = {};
  for (const [dotted, value] of Object.entries(wanted)) {
    const [section, key] = dotted.split('.');
    if (JSON.stringify(value) !== JSON.stringify(running(section, key))) found[dotted] = value;
  }
  return found;
}

async function finish() {
  $('welcome-error').hidden = true;
  const wanted = changes();
  if (Object.keys(wanted).length) {
    say('Saving…');
    const response = await fetch('/api/settings', {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ changes: wanted }),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const errors = Object.entries(answer.errors || {}).map(([k, v]) => `${k}: ${v}`);
      $('welcome-error').textContent = errors.join('; ') || answer.error || `refused (${response.status})`;
      $('welcome-error').hidden = false;
      say('');
      return;
    }
    if (answer.impact === 'restart') {
      say('Saved. The daemon restarts with its new settings…');
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
  }
  location.assign('/');
}

async function start() {
  const response = await fetch('/api/settings', { cache: 'no-store' });
  if (!response.ok) {
    say(`Cannot read the settings: ${(await response.text()).trim()}`);
    return;
  }
  settings = await response.json();
  $('name').value = running('onvif', 'name') || '';
  $('upside-down').checked = running('camera', 'rotation') === 180;
  $('mirror').checked = Boolean(running('camera', 'hflip'));
  $('recording').checked = Boolean(running('recording', 'enabled'));
  showTimeZones();
  showPicture();
  $('new-picture').addEventListener('click', showPicture);
  $('finish').addEventListener('click', () => finish().catch((error) => say(error.message)));
  document.body.dataset.loaded = 'yes';
  await Promise.all([showNetwork(), showNotifications()]).catch((error) => console.warn(error));
}

start();
