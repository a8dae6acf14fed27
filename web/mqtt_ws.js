// The page's MQTT transport for remote access: an MQTT 3.1.1 client over a WebSocket
// (subprotocol "mqtt", binary frames), carrying the sealed signaling messages between a
// paired phone and the camera through the user's broker (web/remote_crypto.js seals).
//
// Own client, not a library. Compared: mqtt.js 5.16 (MIT, maintained): its
// dist/mqtt.esm.js loads as a plain ES module, but weighs 342 KB minified (105 KB gzipped:
// Node's Buffer, stream and process shims, MQTT 5) for a page cached on a phone and served
// by a Pi, and the daemon serves only web/'s top level (web/vendor/ would need server and
// packaging changes). The page needs QoS 1 publish/subscribe and keepalive: 440 lines here.
//
// One MqttLink is one connection: clean session, no reconnect inside (make a new one).
// onclose hears once, with the reason, whenever the link ends: a failed connect() too
// (which also rejects), a lost socket, a missed PINGRESP, a protocol error or close().
// Waiting subscribe() and publish() calls then reject with the same reason.
// The page's Content-Security-Policy must allow the broker's wss:// URL in connect-src.

export const MAX_PAYLOAD = 128 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;
// The largest packet accepted from the broker: a PUBLISH with the longest topic and
// the largest payload. Anything longer ends the link rather than filling memory.
const MAX_INCOMING = MAX_PAYLOAD + 2 + 65535 + 2;

const CONNECT = 1;
const CONNACK = 2;
const PUBLISH = 3;
const PUBACK = 4;
const SUBSCRIBE = 8;
const SUBACK = 9;
const PINGREQ = 12;
const PINGRESP = 13;
const DISCONNECT = 14;

const REFUSALS = {
  1: 'unacceptable protocol version',
  2: 'client identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized',
};

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

// Remaining length: 7 bits a byte, least significant first, high bit = more follows;
// at most four bytes (268,435,455).
export function encodeLength(length) {
  if (!Number.isInteger(length) || length < 0 || length > 268_435_455) {
    throw new RangeError(`MQTT remaining length out of range: ${length}`);
  }
  const out = [];
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    out.push(byte);
  } while (length > 0);
  return out;
}

function u16(value) {
  return Uint8Array.of(value >> 8, value & 0xff);
}

function lengthPrefixed(bytes, what) {
  if (bytes.length > 65535) throw new RangeError(`${what} longer than 65535 bytes`);
  const out = new Uint8Array(2 + bytes.length);
  out.set(u16(bytes.length));
  out.set(bytes, 2);
  return out;
}

function packet(firstByte, ...parts) {
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const header = [firstByte, ...encodeLength(length)];
  const out = new Uint8Array(header.length + length);
  out.set(header);
  let at = header.length;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function readU16(bytes, at) {
  return (bytes[at] << 8) | bytes[at + 1];
}

function randomClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return 'peercam-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function report(error) {
  // An exception in the caller's handler must not break the link's own bookkeeping.
  if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
  else console.error(error);
}

export class MqttLink {
  onmessage = (topic, bytes) => {};
  onclose = (reason) => {};

  #url;
  #username;
  #password;
  #clientId;
  #keepalive;
  #state = 'new'; // new → connecting → connected → closed
  #ws = null;
  #connecting = null; // { resolve, reject } until CONNACK
  #connectTimer = null;
  #pingTimer = null;
  #pongTimer = null;
  #pending = new Map(); // packet id → { kind, resolve, reject }
  #nextId = 1;
  // Reading: the fixed header's bytes so far, then the packet being filled.
  #head = [];
  #packetType = 0;
  #packetFlags = 0;
  #body = null;
  #filled = 0;

  constructor(url, { username, password, clientId, keepalive = 30 } = {}) {
    if (!Number.isInteger(keepalive) || keepalive < 0 || keepalive > 65535) {
      throw new RangeError('keepalive must be a whole number of seconds, 0 to 65535');
    }
    if (password !== undefined && password !== null && (username === undefined || username === null)) {
      throw new TypeError('MQTT 3.1.1 allows a password only with a user name');
    }
    this.#url = url;
    this.#username = username ?? null;
    this.#password = password ?? null;
    this.#clientId = clientId || randomClientId();
    this.#keepalive = keepalive;
  }

  get connected() {
    return this.#state === 'connected';
  }

  get clientId() {
    return this.#clientId;
  }

  connect() {
    if (this.#state !== 'new') {
      return Promise.reject(new Error('an MqttLink connects once; make a new one to reconnect'));
    }
    this.#state = 'connecting';
    return new Promise((resolve, reject) => {
      this.#connecting = { resolve, reject };
      this.#connectTimer = setTimeout(
        () => this.#end(`no answer from the broker within ${CONNECT_TIMEOUT_MS / 1000} s`),
        CONNECT_TIMEOUT_MS);
      let ws;
      try {
        ws = new WebSocket(this.#url, 'mqtt');
      } catch (error) {
        this.#end(`cannot open a WebSocket to ${this.#url}: ${error.message}`);
        return;
      }
      ws.binaryType = 'arraybuffer';
      this.#ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.#send(this.#connectPacket());
      };
      ws.onmessage = (event) => {
        if (!(event.data instanceof ArrayBuffer)) {
          this.#end('protocol error: the broker sent a text frame');
          return;
        }
        this.#feed(new Uint8Array(event.data));
      };
      // An error event carries no detail; the close event that always follows says more.
      ws.onerror = () => {};
      ws.onclose = (event) => {
        const how = `WebSocket code ${event.code}${event.reason ? `, ${event.reason}` : ''}`;
        if (!opened) this.#end(`could not reach the broker at ${this.#url} (${how})`);
        else if (this.#state === 'connecting') this.#end(`the broker closed the connection before CONNACK (${how})`);
        else this.#end(`the broker closed the connection (${how})`);
      };
    });
  }

  subscribe(topic) {
    const filter = utf8.encode(String(topic));
    if (filter.length === 0) return Promise.reject(new TypeError('empty topic filter'));
    return this.#request('subscribe', (id) =>
      packet((SUBSCRIBE << 4) | 0x02, u16(id), lengthPrefixed(filter, 'topic filter'), [1]));
  }

  publish(topic, bytes) {
    const name = utf8.encode(String(topic));
    if (name.length === 0 || /[+#\0]/.test(String(topic))) {
      return Promise.reject(new TypeError(`not a topic to publish to: ${JSON.stringify(topic)}`));
    }
    if (!(bytes instanceof Uint8Array)) return Promise.reject(new TypeError('the payload must be a Uint8Array'));
    if (bytes.length > MAX_PAYLOAD) {
      return Promise.reject(new RangeError(`payload of ${bytes.length} bytes exceeds ${MAX_PAYLOAD}`));
    }
    // QoS 1, no retain; never resent (a new session starts clean).
    return this.#request('publish', (id) =>
      packet((PUBLISH << 4) | 0x02, lengthPrefixed(name, 'topic'), u16(id), bytes));
  }

  close() {
    if (this.#state === 'closed') return;
    if (this.#state === 'connected') this.#send(packet(DISCONNECT << 4));
    this.#end('closed by this side');
  }

  #request(kind, build) {
    if (this.#state !== 'connected') return Promise.reject(new Error('not connected'));
    const id = this.#takeId();
    let data;
    try {
      data = build(id);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { kind, resolve, reject });
      this.#send(data);
    });
  }

  #takeId() {
    if (this.#pending.size >= 65535) throw new Error('65535 requests already waiting');
    while (this.#pending.has(this.#nextId)) this.#nextId = (this.#nextId % 65535) + 1;
    const id = this.#nextId;
    this.#nextId = (this.#nextId % 65535) + 1;
    return id;
  }

  #connectPacket() {
    let flags = 0x02; // clean session
    const payload = [lengthPrefixed(utf8.encode(this.#clientId), 'client identifier')];
    if (this.#username !== null) {
      flags |= 0x80;
      payload.push(lengthPrefixed(utf8.encode(String(this.#username)), 'user name'));
    }
    if (this.#password !== null) {
      flags |= 0x40;
      const password = this.#password instanceof Uint8Array ? this.#password : utf8.encode(String(this.#password));
      payload.push(lengthPrefixed(password, 'password'));
    }
    const variable = Uint8Array.of(0, 4, 0x4d, 0x51, 0x54, 0x54, 4, flags, this.#keepalive >> 8, this.#keepalive & 0xff);
    return packet(CONNECT << 4, variable, ...payload);
  }

  #send(data) {
    try {
      this.#ws.send(data);
    } catch (error) {
      this.#end(`cannot send: ${error.message}`);
    }
  }

  // Bytes as they come: a packet may span WebSocket messages, and a message may hold
  // several packets.
  #feed(chunk) {
    let at = 0;
    while (at < chunk.length && this.#state !== 'closed') {
      if (this.#body === null) {
        const byte = chunk[at++];
        this.#head.push(byte);
        if (this.#head.length === 1 || (byte & 0x80) !== 0) {
          if (this.#head.length === 5) {
            this.#end('protocol error: remaining length longer than four bytes');
            return;
          }
          continue;
        }
        let length = 0;
        for (let i = this.#head.length - 1; i >= 1; i--) length = length * 128 + (this.#head[i] & 0x7f);
        if (length > MAX_INCOMING) {
          this.#end(`protocol error: a packet of ${length} bytes is larger than accepted`);
          return;
        }
        this.#packetType = this.#head[0] >> 4;
        this.#packetFlags = this.#head[0] & 0x0f;
        this.#head = [];
        this.#body = new Uint8Array(length);
        this.#filled = 0;
      } else {
        const take = Math.min(this.#body.length - this.#filled, chunk.length - at);
        this.#body.set(chunk.subarray(at, at + take), this.#filled);
        this.#filled += take;
        at += take;
      }
      if (this.#body !== null && this.#filled === this.#body.length) {
        const body = this.#body;
        this.#body = null;
        this.#handle(this.#packetType, this.#packetFlags, body);
      }
    }
  }

  #handle(type, flags, body) {
    const expectFixed = (want, size) => {
      if (flags !== want || (size !== null && body.length !== size)) {
        this.#end(`protocol error: malformed packet of type ${type}`);
        return false;
      }
      return true;
    };
    if (type === CONNACK) {
      if (!expectFixed(0, 2)) return;
      if (this.#state !== 'connecting') {
        this.#end('protocol error: CONNACK on an open connection');
        return;
      }
      const code = body[1];
      if (code !== 0) {
        this.#end(`the broker refused the connection: ${REFUSALS[code] ?? 'unknown reason'} (CONNACK ${code})`);
        return;
      }
      clearTimeout(this.#connectTimer);
      this.#connectTimer = null;
      this.#state = 'connected';
      this.#startKeepalive();
      const { resolve } = this.#connecting;
      this.#connecting = null;
      resolve();
      return;
    }
    if (this.#state !== 'connected') {
      this.#end(`protocol error: packet of type ${type} before CONNACK`);
      return;
    }
    if (type === PUBLISH) {
      this.#received(flags, body);
    } else if (type === PUBACK) {
      if (expectFixed(0, 2)) this.#acknowledged('publish', readU16(body, 0), null);
    } else if (type === SUBACK) {
      if (expectFixed(0, 3)) this.#acknowledged('subscribe', readU16(body, 0), body[2]);
    } else if (type === PINGRESP) {
      if (expectFixed(0, 0)) {
        clearTimeout(this.#pongTimer);
        this.#pongTimer = null;
      }
    } else {
      this.#end(`protocol error: unexpected packet of type ${type}`);
    }
  }

  #received(flags, body) {
    const qos = (flags >> 1) & 0x03;
    if (qos > 1) {
      // Subscriptions are made at QoS 1, so the broker never sends more.
      this.#end(`protocol error: PUBLISH at QoS ${qos}`);
      return;
    }
    if (body.length < 2) {
      this.#end('protocol error: PUBLISH too short');
      return;
    }
    const topicLength = readU16(body, 0);
    const payloadAt = 2 + topicLength + (qos ? 2 : 0);
    if (payloadAt > body.length) {
      this.#end('protocol error: PUBLISH too short');
      return;
    }
    let topic;
    try {
      topic = fromUtf8.decode(body.subarray(2, 2 + topicLength));
    } catch {
      this.#end('protocol error: topic is not UTF-8');
      return;
    }
    try {
      this.onmessage(topic, body.slice(payloadAt));
    } catch (error) {
      report(error);
    }
    if (qos === 1 && this.#state === 'connected') {
      this.#send(packet(PUBACK << 4, body.subarray(2 + topicLength, payloadAt)));
    }
  }

  #acknowledged(kind, id, code) {
    const waiting = this.#pending.get(id);
    if (!waiting || waiting.kind !== kind) {
      this.#end(`protocol error: ${kind} acknowledgement for unknown packet ${id}`);
      return;
    }
    this.#pending.delete(id);
    if (code === 0x80) waiting.reject(new Error('the broker refused the subscription (SUBACK 0x80)'));
    else waiting.resolve();
  }

  #startKeepalive() {
    if (this.#keepalive === 0) return;
    const every = this.#keepalive * 1000;
    this.#pingTimer = setInterval(() => {
      if (this.#pongTimer !== null) return; // still waiting for the last one
      this.#send(packet(PINGREQ << 4));
      this.#pongTimer = setTimeout(
        () => this.#end(`no PINGRESP from the broker within ${this.#keepalive * 1.5} s`),
        every * 1.5);
    }, every);
  }

  // The one way a link ends: timers stop, the socket closes, whatever waits is
  // rejected with the reason, and onclose hears it once.
  #end(reason) {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    clearTimeout(this.#connectTimer);
    clearInterval(this.#pingTimer);
    clearTimeout(this.#pongTimer);
    this.#connectTimer = this.#pingTimer = this.#pongTimer = null;
    this.#body = null;
    this.#head = [];
    if (this.#ws !== null) {
      const ws = this.#ws;
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    const error = new Error(reason);
    if (this.#connecting !== null) {
      this.#connecting.reject(error);
      this.#connecting = null;
    }
    for (const waiting of this.#pending.values()) waiting.reject(error);
    this.#pending.clear();
    try {
      this.onclose(reason);
    } catch (failure) {
      report(failure);
    }
  }
}
