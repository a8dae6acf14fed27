// The /pair page: a phone on the camera's network pairs once, from the QR code the
// admin's page shows (the code is in the URL's fragment, which never reaches the
// server or a log) or by typing the short code. It makes its own key (never leaves
// the phone), proves it knows the code, checks the camera proves it too, and keeps
// the pairing in IndexedDB (remote_store.js) for reaching the camera from anywhere.

import {
  Refused, checkPairingResponse, generateDeviceKey, pairingRequest, parseQrFragment,
} from './remote_crypto.js';
import { savePairing } from './remote_store.js';

const $ = (id) => document.getElementById(id);
const form = $('pair');
const codeInput = $('code');
const nameInput = $('name');
const CODE = /^[0-9A-HJKMNP-TV-Z]{10}$/; // Crockford base32, as pairing.py makes them

// What the camera's refusal codes (pairing.py) mean to the person holding the phone.
const REFUSALS = {
  'bad-mac': 'The camera does not know this code. Check it, or make a new one on the camera\'s page.',
  used: 'This code was already used. Make a new one on the camera\'s page.',
  expired: 'This code has expired (or this phone\'s clock is wrong). Make a new one on the camera\'s page.',
  cancelled: 'This code was cancelled after too many wrong tries. Make a new one on the camera\'s page.',
  camera: 'This code is for another camera.',
  replayed: 'This request was already sent. Try again.',
};

// "Chrome on Android": what the admin sees in the list of paired devices.
export function describeDevice(ua = navigator.userAgent) {
  const browsers = [
    [/EdgA?\//, 'Edge'], [/OPR\//, 'Opera'], [/SamsungBrowser\//, 'Samsung Internet'],
    [/Firefox\/|FxiOS\//, 'Firefox'], [/Chrome\/|CriOS\//, 'Chrome'], [/Safari\//, 'Safari'],
  ];
  const systems = [
    [/Android/, 'Android'], [/iPhone/, 'iPhone'], [/iPad/, 'iPad'], [/CrOS/, 'ChromeOS'],
    [/Windows/, 'Windows'], [/Macintosh|Mac OS X/, 'macOS'], [/Linux/, 'Linux'],
  ];
  const browser = browsers.find(([pattern]) => pattern.test(ua))?.[1] ?? 'Browser';
  const system = systems.find(([pattern]) => pattern.test(ua))?.[1];
  return system ? `${browser} on ${system}` : browser;
}

function say(text) {
  const box = $('error');
  box.textContent = text;
  box.hidden = !text;
}

function askForCode() {
  $('from-qr').hidden = true;
  $('code-label').hidden = false;
  codeInput.hidden = false;
  codeInput.required = true;
}

// Read once, then out of the address bar, the history and any bookmark of this page.
let fromQr = null;
if (location.hash.length > 1) {
  try {
    fromQr = parseQrFragment(location.hash);
  } catch {
    say('This link holds no pairing code: type the code shown on the camera\'s page.');
  }
  history.replaceState(null, '', location.pathname + location.search);
}
if (fromQr) {
  $('from-qr').hidden = false;
  $('code-label').hidden = true;
  codeInput.hidden = true;
} else {
  askForCode();
}
nameInput.value = describeDevice();

async function cameraId() {
  const response = await fetch('/api/remote/camera');
  if (!response.ok) throw new Error(`the camera answered ${response.status}`);
  return (await response.json()).camera;
}

async function refusalOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return REFUSALS[body.error] ?? body.reason ?? text;
  } catch {
    return text.trim() || `the camera answered ${response.status}`;
  }
}

async function pair() {
  let secret;
  let camera;
  if (fromQr) {
    ({ secret, cameraId: camera } = fromQr);
  } else {
    secret = codeInput.value.toUpperCase().replace(/[-\s]/g, '').replace(/O/g, '0').replace(/[IL]/g, '1');
    if (!CODE.test(secret)) {
      say('The code is ten letters and digits, like ABCDE-FGHJK.');
      return;
    }
    camera = await cameraId();
  }
  const name = nameInput.value.trim() || describeDevice();
  const keyPair = await generateDeviceKey();
  const { request, key } = await pairingRequest({ secret, cameraId: camera, keyPair, name });
  const response = await fetch('/api/remote/pair', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(request),
  });
  if (!response.ok) {
    say(await refusalOf(response));
    // The QR code's secret is spent or wrong: only a typed code can help now.
    if (fromQr && response.status !== 413) {
      fromQr = null;
      askForCode();
    }
    return;
  }
  const answer = await response.json();
  const cameraKey = await checkPairingResponse(answer, key, request);
  await savePairing({
    cameraId: camera,
    cameraKey,
    deviceId: answer.device,
    deviceKeyPair: keyPair,
    rendezvous: answer.rendezvous ?? null,
    name,
    pairedAt: Date.now(),
  });
  form.hidden = true;
  $('done').hidden = false;
  document.body.dataset.paired = answer.device;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  say('');
  $('submit').disabled = true;
  try {
    await pair();
  } catch (error) {
    say(error instanceof Refused
      ? `The answer did not come from the camera this code belongs to (${error.reason}). Do not use it.`
      : `Pairing failed: ${error?.message ?? error}`);
  } finally {
    $('submit').disabled = false;
  }
});
