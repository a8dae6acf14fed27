// The viewer page: connects over WHEP, plays, reconnects by itself, and shows stats.

import { WhepSession } from './whep.js';
import { RemoteSession } from './remote_session.js';
import { loadPairing } from './remote_store.js';
import { StatsReader, formatStats } from './stats.js';
import { Doorbell } from './doorbell.js';
import { ClipList } from './clips.js';
import { Notifications } from './notifications.js';

const params = new URLSearchParams(location.search);
const videoCodec = params.get('codec'); // "H264" / "VP8": force one (tests, old devices)
// "rendezvous": signal through the paired broker even when the camera answers here.
const forcedWay = params.get('via');
// Opened from a ring's notification (tap or Answer): answer once live, if still ringing.
const answerRing = params.get('answer');
const $ = (id) => document.getElementById(id);
const video = $('video');
const statusBadge = $('status');
const statsBox = $('stats');

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10000;
// A "disconnected" connection often recovers by itself; give it this long first.
const DISCONNECT_GRACE_MS = 4000;
// WebKitGTK builds without WebRTC, Safari in Lockdown Mode, Firefox with
// media.peerconnection.enabled off and some embedded web views have no RTCPeerConnection.
const NO_WEBRTC =
  'live video needs WebRTC, which this browser lacks or has turned off: use a current ' +
  'Chrome, Edge, Firefox or Safari (not in Lockdown Mode), or turn WebRTC on';

function describe(error) {
  return String(error?.message || error?.name || error);
}

// fetch() rejects with a TypeError when no answer comes at all (the camera is off, or
// this device is away from its network): the app says so instead of the browser's words.
const UNREACHABLE = 'the camera is unreachable: trying again';
function unreachable(error) {
  return !navigator.onLine || error?.name === 'TypeError';
}

const PAIRING_WAIT_MS = 3000;

// Whether the camera answers here (at home, or through a port forward): any answer
// counts, a refusal included; no answer within a few seconds does not.
async function cameraAnswers() {
  try {
    await fetch('/api/state', { cache: 'no-store', signal: AbortSignal.timeout(4000) });
    return true;
  } catch {
    return false;
  }
}

// Which way to signal: WHEP to the camera itself when it answers, else through the
// rendezvous this browser was paired with (if it was).
async function chooseWay() {
  // IndexedDB answers at once; should it not (a browser's storage stuck starting), the
  // page connects directly rather than waiting on it for ever.
  const noAnswer = new Promise((resolve) => { setTimeout(() => resolve(null), PAIRING_WAIT_MS); });
  const pairing = await Promise.race([loadPairing().catch(() => null), noAnswer]);
  if (!pairing) return { way: 'direct' };
  if (forcedWay !== 'rendezvous' && (await cameraAnswers())) return { way: 'direct' };
  return { way: 'rendezvous', pairing };
}

class Viewer {
  constructor() {
    this.session = null;
    this.stats = null;
    this.lastStats = null;
    this.retryMs = RETRY_MIN_MS;
    this.retryTimer = null;
    this.graceTimer = null;
    this.connects = 0;
    this.attempts = 0; // connect() calls: the newest one owns what it makes
  }

  setStatus(state, text = state) {
    statusBadge.dataset.state = state;
    statusBadge.textContent = text;
  }

  // Never throws: whatever goes wrong ends on the badge, and a retry where waiting can help.
  // Choosing the way and signaling through the rendezvous can take many seconds, and
  // meanwhile connect() may be called again (a network change, the retry timer): only
  // the newest attempt goes on, and a session an older one made is stopped unused.
  async connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const attempt = ++this.attempts;
    const current = () => attempt === this.attempts;
    if (this.session) {
      // Whatever was there is replaced, never joined by a second session.
      const old = this.session;
      this.session = null;
      old.stop().catch(() => {});
    }
    if (typeof window.RTCPeerConnection !== 'function') {
      // Nothing to retry: this browser will not gain WebRTC by waiting.
      this.setStatus('error', NO_WEBRTC);
      doorbell.connect(); // rings still reach this page
      return;
    }
    // After an error its reason stays up while retrying, until something else happens.
    if (statusBadge.dataset.state !== 'error') {
      this.setStatus(this.connects ? 'reconnecting' : 'connecting');
    }
    let session;
    const { way, pairing } = await chooseWay();
    if (!current()) return;
    try {
      session = way === 'rendezvous'
        ? await RemoteSession.create(pairing, { videoCodec })
        : await WhepSession.create(new URL('/whep', location.href).href, { videoCodec });
    } catch (error) {
      if (!current()) return; // a newer attempt says how it goes
      // A constructor that throws (a refused ICE server entry, a browser policy) may
      // be fixed on the camera or in the browser meanwhile: say so and try again.
      console.warn(error);
      this.setStatus('error', way === 'rendezvous'
        ? `the camera is not reachable here, nor through the rendezvous: ${describe(error)}`
        : `this browser refused to start WebRTC: ${describe(error)}`);
      this.scheduleRetry();
      return;
    }
    if (!current()) {
      session.stop().catch(() => {});
      return;
    }
    this.session = session;
    statusBadge.dataset.way = session.path;
    useChannel(session);
    // The daemon sends audio and video as separate streams (so that the browser does
    // not delay the picture for lip sync); the one element plays both.
    const tracks = [];
    session.pc.addEventListener('track', (event) => {
      if (tracks.includes(event.track)) return;
      tracks.push(event.track);
      // A new stream each time: a player set up before a track existed may ignore it.
      video.srcObject = new MediaStream(tracks);
      video.play().catch(() => {});
    });
    session.pc.addEventListener('connectionstatechange', () => this.onState(session));
    try {
      await session.start();
      if (session !== this.session) return; // replaced while it started
      if (session.role) showRemoteRole(session.role);
      this.stats = new StatsReader(session.pc);
    } catch (error) {
      if (session !== this.session) return; // stopped for a newer attempt: not an error
      console.warn(error);
      if (error.status === 401) {
        toLogin(); // the login session expired or was ended
        return;
      }
      this.setStatus('error', unreachable(error) ? UNREACHABLE : describe(error));
      this.retry(session);
    }
  }

  onState(session) {
    if (session !== this.session) return;
    const state = session.pc.connectionState;
    clearTimeout(this.graceTimer);
    if (state === 'connected') {
      this.connects += 1;
      this.retryMs = RETRY_MIN_MS;
      this.setStatus('connected', session.path === 'rendezvous' ? 'live, through the rendezvous' : 'live');
      this.showMediaPath(session);
      doorbell.answerWhenReady();
    } else if (state === 'disconnected') {
      this.setStatus('reconnecting', 'connection interrupted');
      this.graceTimer = setTimeout(() => this.retry(session), DISCONNECT_GRACE_MS);
    } else if (state === 'failed' || state === 'closed') {
      const turn = session.iceErrors.length ? ` (TURN: ${session.iceErrors.at(-1)})` : '';
      this.setStatus('failed', (this.connects ? 'connection lost' : 'could not connect') + turn);
      this.retry(session);
    } else {
      this.setStatus('connecting', state);
    }
  }

  // Says which way the media flows once ICE has chosen: direct, or relayed by TURN.
  // The stats may not name the chosen pair yet at the moment 'connected' fires (a
  // busy phone): asked again for a few seconds rather than never said.
  async showMediaPath(session) {
    try {
      let path = '';
      for (let attempt = 0; attempt < 20 && !path; attempt += 1) {
        if (attempt) await new Promise((resolve) => setTimeout(resolve, 250));
        if (session !== this.session) return;
        ({ path } = await new StatsReader(session.pc).read());
      }
      if (session !== this.session || !path) return;
      statusBadge.dataset.media = path.startsWith('relay') ? 'relay' : 'direct';
      if (session.path === 'rendezvous') {
        statusBadge.textContent = `live, through the rendezvous (${statusBadge.dataset.media === 'relay' ? 'media relayed' : 'media direct'})`;
      }
    } catch (error) {
      console.warn(error);
    }
  }

  retry(session) {
    if (session !== this.session) return;
    this.session = null;
    session.stop().catch(() => {});
    this.scheduleRetry();
  }

  scheduleRetry() {
    clearTimeout(this.retryTimer);
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  async refreshStats() {
    if (!this.stats) return;
    try {
      this.lastStats = await this.stats.read();
      if (!statsBox.hidden) statsBox.textContent = formatStats(this.lastStats, this.cameraStats);
    } catch (error) {
      console.warn(error);
    }
  }
}

// The session's data channel: the camera's side of the stats always; doorbell events
// and commands, and clips, too when it is the only way to the camera.
function useChannel(session) {
  const remote = session.path === 'rendezvous';
  session.channel.onevent = (event) => {
    if (event.type === 'stats') viewer.cameraStats = event;
    else if (remote) doorbell.receive(event);
  };
  doorbell.useChannel(remote ? session.channel : null);
  clips.channel = remote ? session.channel : null;
  if (!remote) doorbell.connect();
}

// Away from home there is no /api/session to ask: the camera said, in its answer,
// which account this paired device acts as.
function showRemoteRole(role) {
  document.body.dataset.role = role;
  clips.isAdmin = false; // deleting and recording by hand stay on the home network
  for (const id of ['talk', 'open-door', 'answer', 'decline']) $(id).hidden = role !== 'admin';
}

function toLogin() {
  location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
}

// Talk, answer and open door are for admins; a viewer's page does not offer them
// (the daemon refuses them anyway).
const clips = new ClipList({
  list: $('clip-list'),
  player: $('clip-player'),
  storage: $('clip-storage'),
  empty: $('no-clips'),
  recordButton: $('record-now'),
});
window.peercamClips = clips;
$('toggle-clips').addEventListener('click', () => {
  const panel = $('clips');
  panel.hidden = !panel.hidden;
  $('toggle-clips').setAttribute('aria-pressed', String(!panel.hidden));
  if (!panel.hidden) clips.refresh().catch((error) => console.warn(error));
});
$('close-clips').addEventListener('click', () => {
  $('clips').hidden = true;
  $('clip-player').pause();
  $('toggle-clips').setAttribute('aria-pressed', 'false');
});
$('record-now').addEventListener('click', async () => {
  const problem = await clips.recordNow();
  doorbell.ui.say(problem ?? 'Recording a clip');
});

async function showRole() {
  let response;
  try {
    response = await fetch('/api/session');
  } catch {
    return; // away from home: the remote session's answer says the role
  }
  if (response.status === 401) return toLogin();
  if (!response.ok) return;
  const { role, notices = [] } = await response.json();
  document.body.dataset.role = role;
  clips.isAdmin = role === 'admin';
  if (role === 'admin') import('./devices.js').then((m) => m.setupRemoteAccess()).catch(console.warn);
  for (const id of ['talk', 'open-door', 'answer', 'decline', 'camera-settings']) {
    $(id).hidden = role !== 'admin';
  }
  showSetupNotices(notices);
}

// Settings from the SD card that could not be used: the admin should see why the
// camera does not do what the card says.
function showSetupNotices(notices) {
  const section = $('setup-notices');
  const list = section.querySelector('ul');
  list.replaceChildren(...notices.map((text) => {
    const item = document.createElement('li');
    item.textContent = text;
    return item;
  }));
  section.hidden = notices.length === 0;
}
$('dismiss-notices').addEventListener('click', () => { $('setup-notices').hidden = true; });
showRole().catch((error) => console.warn(error));

const viewer = new Viewer();
// Milliseconds from navigation to the first frame shown (benchmarks read it).
viewer.firstFrameMs = null;
if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) {
  video.requestVideoFrameCallback((now) => { viewer.firstFrameMs = now; });
} else {
  video.addEventListener('loadeddata', () => { viewer.firstFrameMs ??= performance.now(); }, { once: true });
}
// Tests and curious users can reach the live session from the console.
window.peercam = viewer;

$('unmute').addEventListener('click', (event) => {
  video.muted = !video.muted;
  // Plain words: icon glyphs depend on fonts a kiosk or a minimal system may lack.
  event.currentTarget.textContent = video.muted ? 'Unmute' : 'Mute';
  event.currentTarget.setAttribute('aria-pressed', String(!video.muted));
  video.play().catch(() => {});
});

$('toggle-stats').addEventListener('click', (event) => {
  statsBox.hidden = !statsBox.hidden;
  event.currentTarget.setAttribute('aria-pressed', String(!statsBox.hidden));
  if (viewer.lastStats) statsBox.textContent = formatStats(viewer.lastStats, viewer.cameraStats);
});

$('fullscreen').addEventListener('click', () => {
  const stage = $('stage');
  if (document.fullscreenElement) document.exitFullscreen();
  else (stage.requestFullscreen ?? video.webkitEnterFullscreen)?.call(stage);
});

$('snapshot').addEventListener('click', () => {
  if (!video.videoWidth) return;
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = `peercam-${new Date().toISOString().replace(/[:.]/g, '-')}.png`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }, 'image/png');
});

let noticeTimer = null;
const doorbell = new Doorbell(viewer, {
  say(text) {
    const notice = $('notice');
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { notice.hidden = true; }, 6000);
  },
  showRing(on) { $('ring').hidden = !on; },
  showCall(on) { $('hangup').hidden = !on; $('talk').disabled = on; },
  showTalking(on) { $('talk').setAttribute('aria-pressed', String(on)); },
  clipSaved() {
    if (!$('clips').hidden) clips.refresh().catch((error) => console.warn(error));
  },
});
window.peercamDoorbell = doorbell;
if (answerRing !== null) {
  doorbell.autoAnswer = true;
  // A reload must not answer a later ring.
  history.replaceState(null, '', location.pathname);
}
$('answer').addEventListener('click', () => doorbell.answer());
$('decline').addEventListener('click', () => doorbell.decline());
$('hangup').addEventListener('click', () => doorbell.hangUp());
$('open-door').addEventListener('click', () => doorbell.openDoor());
doorbell.bindTalkButton($('talk'));
// At once, as the page loads: rings reach it before its video does. A page that
// signals through the rendezvous swaps it for its data channel (useChannel).
if (forcedWay !== 'rendezvous') doorbell.connect();

const notifications = new Notifications({
  // A notification tapped while this page is open: the page answers or shows clips.
  onNotificationClick({ kind }) {
    if (kind === 'ring') {
      doorbell.autoAnswer = true;
      doorbell.answerWhenReady();
    } else if (kind === 'clip' && $('clips').hidden) {
      $('toggle-clips').click();
    }
  },
});
window.peercamNotifications = notifications;
notifications.bindPanel((text) => doorbell.ui.say(text));
notifications.start().catch((error) => console.warn(error));
if (params.has('clips')) $('toggle-clips').click();

// A new network (Wi-Fi to mobile data, back online) invalidates the path found by
// ICE; a connection that is not healthy then reconnects at once, not after backoff.
function onNetworkChange() {
  const session = viewer.session;
  if (session && session.pc.connectionState === 'connected') return;
  viewer.retryMs = RETRY_MIN_MS;
  if (session) viewer.retry(session); // tear down the stale attempt, retry at once
  else viewer.connect(); // waiting out a backoff: try now instead
}
window.addEventListener('online', onNetworkChange);
navigator.connection?.addEventListener?.('change', onNetworkChange);
window.addEventListener('pagehide', () => viewer.session?.stop({ keepalive: true }));
setInterval(() => viewer.refreshStats(), 1000);
viewer.connect();
