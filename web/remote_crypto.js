// The page's side of remote access's trust layer: pairing with the camera, then
// signaling messages sealed end to end so the rendezvous (an MQTT broker) relays only
// ciphertext. The construction, and why, is in device/peercam/remote/sealing.py and
// pairing.py; this is the same with WebCrypto alone (ECDH P-256, HKDF-SHA256,
// AES-256-GCM, HMAC-SHA256 work in every browser), no library.

const VERSION = 1;
const TO_CAMERA = 1;
const TO_DEVICE = 2;
const ID_BYTES = 16;
const KEY_BYTES = 65;
const HEADER_BYTES = 2 + 2 * ID_BYTES + 8 + KEY_BYTES;
const TAG_BYTES = 16;
const MAX_PAYLOAD = 96 * 1024;
const text = new TextEncoder();
const SEAL_SALT = text.encode('peercam-remote-v1');
const PAIR_SALT = text.encode('peercam-pair-v1');
const REQUEST_LABEL = text.encode('peercam-pair-request-v1\0');
const RESPONSE_LABEL = text.encode('peercam-pair-response-v1\0');
const P256 = { name: 'ECDH', namedCurve: 'P-256' };
const subtle = globalThis.crypto.subtle;

export class Refused extends Error {
  constructor(code, reason) {
    super(`${code}: ${reason}`);
    this.code = code;
    this.reason = reason;
  }
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function fromHex(hex) {
  if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new Refused('garbage', 'not hex');
  return new Uint8Array(hex.match(/../g)?.map((pair) => parseInt(pair, 16)) ?? []);
}

export function toB64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromB64url(value) {
  try {
    const binary = atob(value.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    throw new Refused('garbage', 'not base64url');
  }
}

function equal(a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

// The private key is not extractable: kept in IndexedDB as a CryptoKey, a script
// can use it but never read it out.
export function generateDeviceKey() {
  return subtle.generateKey(P256, false, ['deriveBits']);
}

export async function publicRaw(publicKey) {
  return new Uint8Array(await subtle.exportKey('raw', publicKey));
}

export async function keyId(raw) {
  return new Uint8Array(await subtle.digest('SHA-256', raw)).slice(0, ID_BYTES);
}

async function importPublic(raw) {
  if (raw.length !== KEY_BYTES || raw[0] !== 4) {
    throw new Refused('bad-key', 'not an uncompressed P-256 public key');
  }
  try {
    return await subtle.importKey('raw', raw, P256, true, []);
  } catch {
    throw new Refused('bad-key', 'not a point on P-256');
  }
}

async function ecdh(privateKey, publicKey) {
  return new Uint8Array(await subtle.deriveBits({ name: 'ECDH', public: publicKey }, privateKey, 256));
}

async function hkdf(ikm, salt, info, bytes) {
  const base = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return new Uint8Array(await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, base, bytes * 8));
}

async function messageKey(ikm, header, sender, recipient) {
  const okm = await hkdf(ikm, SEAL_SALT, concat(header, sender, recipient), 44);
  const key = await subtle.importKey('raw', okm.slice(0, 32), 'AES-GCM', false, ['encrypt', 'decrypt']);
  return { key, iv: okm.slice(32) };
}

// A paired device's end of the channel: seal for the camera, open what it sends.
export class DeviceChannel {
  static async create({ keyPair, cameraPublicKey, window = 120, clock = () => Date.now() / 1000 }) {
    const channel = new DeviceChannel();
    channel.keyPair = keyPair;
    channel.cameraRaw = cameraPublicKey;
    channel.camera = await importPublic(cameraPublicKey);
    channel.cameraId = await keyId(cameraPublicKey);
    channel.publicKey = await publicRaw(keyPair.publicKey);
    channel.id = await keyId(channel.publicKey);
    channel.deviceId = toHex(channel.id);
    channel.window = window;
    channel.clock = clock;
    // Ephemeral keys seen within the window (hex) -> when to forget them.
    channel.seen = new Map();
    return channel;
  }

  async seal(payload) {
    if (payload.length > MAX_PAYLOAD) throw new RangeError(`payload of ${payload.length} bytes`);
    const ephemeral = await subtle.generateKey(P256, false, ['deriveBits']);
    const header = new Uint8Array(HEADER_BYTES);
    const view = new DataView(header.buffer);
    header[0] = VERSION;
    header[1] = TO_CAMERA;
    header.set(this.cameraId, 2);
    header.set(this.id, 2 + ID_BYTES);
    view.setBigUint64(2 + 2 * ID_BYTES, BigInt(Math.floor(this.clock() * 1000)));
    header.set(await publicRaw(ephemeral.publicKey), 2 + 2 * ID_BYTES + 8);
    const ikm = concat(await ecdh(ephemeral.privateKey, this.camera), await ecdh(this.keyPair.privateKey, this.camera));
    const { key, iv } = await messageKey(ikm, header, this.publicKey, this.cameraRaw);
    const sealed = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: header }, key, payload));
    return concat(header, sealed);
  }

  // Resolves to { payload, sentAt } or rejects with Refused, never anything else.
  async open(data) {
    if (!(data instanceof Uint8Array)) throw new Refused('garbage', 'not bytes');
    if (data.length < HEADER_BYTES + TAG_BYTES) throw new Refused('truncated', `${data.length} bytes`);
    if (data.length > HEADER_BYTES + MAX_PAYLOAD + TAG_BYTES) throw new Refused('too-large', `${data.length} bytes`);
    const header = data.slice(0, HEADER_BYTES);
    const view = new DataView(header.buffer);
    if (header[0] !== VERSION) throw new Refused('version', `version ${header[0]}`);
    if (header[1] !== TO_DEVICE) throw new Refused('direction', 'not a message for a device');
    if (!equal(header.slice(2, 2 + ID_BYTES), this.cameraId)) {
      throw new Refused('camera', 'from another camera than the paired one');
    }
    if (!equal(header.slice(2 + ID_BYTES, 2 + 2 * ID_BYTES), this.id)) {
      throw new Refused('recipient', 'meant for another device');
    }
    const sentAt = Number(view.getBigUint64(2 + 2 * ID_BYTES)) / 1000;
    const now = this.clock();
    if (Math.abs(now - sentAt) > this.window) throw new Refused('expired', `sent ${Math.round(now - sentAt)} s ago`);
    const ephemeralRaw = header.slice(2 + 2 * ID_BYTES + 8);
    const ephemeral = await importPublic(ephemeralRaw);
    const ikm = concat(await ecdh(this.keyPair.privateKey, ephemeral), await ecdh(this.keyPair.privateKey, this.camera));
    const { key, iv } = await messageKey(ikm, header, this.cameraRaw, this.publicKey);
    let payload;
    try {
      payload = new Uint8Array(
        await subtle.decrypt({ name: 'AES-GCM', iv, additionalData: header }, key, data.slice(HEADER_BYTES)),
      );
    } catch {
      throw new Refused('forged', 'authentication failed');
    }
    // Remembered only once authentic, so forgeries cannot crowd out real messages.
    for (const [seen, until] of this.seen) if (until < now) this.seen.delete(seen);
    const mark = toHex(ephemeralRaw);
    if (this.seen.has(mark)) throw new Refused('replayed', 'this message was already received');
    this.seen.set(mark, sentAt + this.window);
    return { payload, sentAt };
  }
}

// Pairing: `secret` is the QR code's bytes, or the typed code as a string.
function normalizeCode(code) {
  return code.toUpperCase().replace(/[-\s]/g, '').replace(/O/g, '0').replace(/[IL]/g, '1');
}

async function pairKey(secret, cameraId) {
  const ikm = typeof secret === 'string' ? text.encode(normalizeCode(secret)) : secret;
  const bits = await hkdf(ikm, PAIR_SALT, cameraId, 32);
  return subtle.importKey('raw', bits, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
}

export function parseQrFragment(fragment) {
  const [version, cameraId, secret] = fragment.replace(/^#/, '').split('.');
  if (version !== String(VERSION) || !cameraId || !secret) throw new Refused('garbage', 'not a pairing code');
  return { cameraId, secret: fromB64url(secret) };
}

export async function pairingRequest({ secret, cameraId, keyPair, name, now = Date.now() / 1000 }) {
  const camera = fromHex(cameraId);
  const key = await pairKey(secret, camera);
  const device = await publicRaw(keyPair.publicKey);
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  const millis = Math.floor(now * 1000);
  const time = new Uint8Array(8);
  new DataView(time.buffer).setBigUint64(0, BigInt(millis));
  const mac = new Uint8Array(
    await subtle.sign('HMAC', key, concat(REQUEST_LABEL, camera, device, time, nonce, text.encode(name))),
  );
  const request = {
    v: VERSION,
    camera: cameraId,
    device_key: toB64url(device),
    name,
    time: millis,
    nonce: toB64url(nonce),
    mac: toB64url(mac),
  };
  return { request, key };
}

// The camera's public key, once the response proves the camera knew the code.
export async function checkPairingResponse(response, key, request) {
  if (!response || response.v !== VERSION) throw new Refused('garbage', 'not a version 1 pairing response');
  const camera = fromHex(String(response.camera));
  const cameraKey = fromB64url(String(response.camera_key));
  await importPublic(cameraKey);
  if (response.camera !== request.camera || !equal(await keyId(cameraKey), camera)) {
    throw new Refused('camera', 'the response is from another camera, or its key is not its id');
  }
  const signed = concat(RESPONSE_LABEL, camera, cameraKey, fromHex(String(response.device)), fromB64url(request.nonce));
  if (!(await subtle.verify('HMAC', key, fromB64url(String(response.mac)), signed))) {
    throw new Refused('bad-mac', "the camera's answer does not prove it knew the code");
  }
  return cameraKey;
}
