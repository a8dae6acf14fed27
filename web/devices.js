// The admin's "Remote access" panel on the viewer page: pair a phone (a QR code and a
// short code, valid a few minutes), the phones paired so far with an Unpair button
// each, and whether the camera is linked to its rendezvous. Loaded by viewer.js for
// admins only; it shows its toolbar button only when remote access is on (the API
// answers 404 otherwise).

const $ = (id) => document.getElementById(id);
// While a code is shown, the list is read this often, so a phone that pairs appears.
const POLL_MS = 2000;

function when(seconds) {
  return seconds == null ? 'never' : new Date(seconds * 1000).toLocaleString();
}

async function problem(response) {
  const text = await response.text();
  try {
    return JSON.parse(text).reason ?? text;
  } catch {
    return text.trim() || `the camera answered ${response.status}`;
  }
}

class RemotePanel {
  constructor() {
    this.panel = $('remote');
    this.toggle = $('toggle-remote');
    this.offer = null; // { deadline (ms), known: Set of device ids when it was made }
    this.ticker = null;
    this.poller = null;
    this.toggle.addEventListener('click', () => (this.panel.hidden ? this.open() : this.close()));
    $('close-remote').addEventListener('click', () => this.close());
    $('remote-pair').addEventListener('click', () => this.makeOffer().catch((e) => this.say(String(e))));
  }

  say(text) {
    const box = $('remote-message');
    box.textContent = text;
    box.hidden = !text;
  }

  async open() {
    this.panel.hidden = false;
    this.toggle.setAttribute('aria-pressed', 'true');
    await this.refresh();
  }

  close() {
    this.panel.hidden = true;
    this.toggle.setAttribute('aria-pressed', 'false');
    this.endOffer();
  }

  // The list and the link; false when remote access is off (or this is no admin).
  async refresh() {
    const response = await fetch('/api/remote/devices');
    if (!response.ok) return false;
    const { devices, link } = await response.json();
    $('remote-link').textContent = link.connected
      ? `Linked to the rendezvous ${link.broker}: paired phones can reach the camera.`
      : `Not linked to the rendezvous ${link.broker} yet: trying again.`;
    $('remote-link').dataset.connected = String(link.connected);
    $('remote-none').hidden = devices.length > 0;
    $('remote-devices').replaceChildren(...devices.map((device) => this.item(device)));
    const fresh = this.offer && devices.find((device) => !this.offer.known.has(device.id));
    if (fresh) {
      this.endOffer();
      this.say(`Paired: ${fresh.name}`);
    }
    this.ids = new Set(devices.map((device) => device.id));
    return true;
  }

  item(device) {
    const item = document.createElement('li');
    item.className = 'remote-device';
    item.dataset.id = device.id;
    const name = document.createElement('strong');
    name.textContent = device.name;
    const about = document.createElement('div');
    about.textContent = `acts as ${device.user || '?'} · paired ${when(device.paired_at)} · last seen ${when(device.last_seen)}`;
    const unpair = document.createElement('button');
    unpair.type = 'button';
    unpair.className = 'reject unpair';
    unpair.textContent = 'Unpair';
    unpair.addEventListener('click', () => this.unpair(device).catch((e) => this.say(String(e))));
    item.append(name, about, unpair);
    return item;
  }

  async unpair(device) {
    if (!confirm(`Unpair ${device.name}? It will no longer reach the camera from outside.`)) return;
    const response = await fetch(`/api/remote/devices/${encodeURIComponent(device.id)}`, { method: 'DELETE' });
    this.say(response.ok || response.status === 404 ? `Unpaired: ${device.name}` : await problem(response));
    await this.refresh();
  }

  async makeOffer() {
    this.say('');
    const response = await fetch('/api/remote/offers', { method: 'POST' });
    if (!response.ok) {
      this.say(await problem(response));
      return;
    }
    const offer = await response.json();
    this.endOffer();
    this.offer = { deadline: Date.now() + offer.expires_in * 1000, known: new Set(this.ids ?? []) };
    // An <img> never runs what an SVG holds, and the page's CSP allows data: images.
    $('remote-qr').src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(offer.qr_svg)}`;
    $('remote-code').textContent = offer.code;
    $('remote-page').textContent = offer.url.split('#')[0];
    $('remote-offer').hidden = false;
    this.tick();
    this.ticker = setInterval(() => this.tick(), 1000);
    this.poller = setInterval(() => this.refresh().catch(() => {}), POLL_MS);
  }

  tick() {
    const left = Math.max(0, Math.round((this.offer.deadline - Date.now()) / 1000));
    const seconds = String(left % 60).padStart(2, '0');
    $('remote-countdown').textContent = `Valid for ${Math.floor(left / 60)}:${seconds}`;
    if (left === 0) {
      this.endOffer();
      this.say('The code expired: make a new one.');
    }
  }

  endOffer() {
    clearInterval(this.ticker);
    clearInterval(this.poller);
    this.ticker = this.poller = this.offer = null;
    $('remote-offer').hidden = true;
    $('remote-qr').removeAttribute('src');
  }
}

export async function setupRemoteAccess() {
  const panel = new RemotePanel();
  if (await panel.refresh()) panel.toggle.hidden = false;
  window.peercamRemote = panel;
}
