// A viewer session signaled through the rendezvous (the broker chosen at pairing)
// instead of POST /whep: for a paired phone away from home. The same shape as
// WhepSession (pc, audio, channel, iceErrors, id, path, start, stop), so the page
// does not care which way it connected. The protocol is the camera's
// device/peercam/remote/signaling.py; every message is sealed end to end
// (remote_crypto.js), so the broker learns nothing from it.

import { MqttLink } from './mqtt_ws.js';
import { DeviceChannel, Refused } from './remote_crypto.js';
import { viewerPeer } from './whep.js';

const REPLY_MS = 15000;
const MAX_CANDIDATES = 32; // per message, as the camera takes them (remote/signaling.py)
const text = new TextEncoder();

export class RemoteSession {
  // `pairing`: what remote_store.js keeps. Resolves once linked to the broker and the
  // camera has given its ICE servers (TURN credentials minted for this call).
  static async create(pairing, { videoCodec = null } = {}) {
    const { rendezvous } = pairing;
    if (!rendezvous?.url) throw new Error('this pairing names no rendezvous to signal through');
    const sealer = await DeviceChannel.create({ keyPair: pairing.deviceKeyPair, cameraPublicKey: pairing.cameraKey });
    const link = new MqttLink(rendezvous.url, {
      username: rendezvous.username ?? undefined,
      password: rendezvous.password ?? undefined,
    });
    const prefix = rendezvous.topic_prefix ?? 'peercam';
    const session = new RemoteSession(link, sealer, `${prefix}/${pairing.cameraId}`, pairing.deviceId);
    try {
      await session.#link(videoCodec);
    } catch (error) {
      link.close();
      throw error;
    }
    return session;
  }

  constructor(link, sealer, base, deviceId) {
    this.mqtt = link;
    this.sealer = sealer;
    this.cameraTopic = `${base}/camera`;
    this.deviceTopic = `${base}/device/${deviceId}`;
    this.call = crypto.randomUUID();
    this.waiting = new Map(); // call -> { resolve, reject, timer }
    this.sessionId = null;
    this.role = null;
    this.path = 'rendezvous';
    this.pendingCandidates = [];
    this.answered = false;
  }

  async #link(videoCodec) {
    this.mqtt.onmessage = (topic, bytes) => this.#receive(bytes);
    this.mqtt.onclose = (reason) => {
      const waiters = [...this.waiting.values()];
      this.waiting.clear();
      for (const waiter of waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error(`rendezvous: ${reason}`));
      }
    };
    await this.mqtt.connect();
    await this.mqtt.subscribe(this.deviceTopic);
    const ice = await this.#ask({ type: 'ice', call: this.call });
    Object.assign(this, viewerPeer({ iceServers: ice.servers ?? [], iceTransportPolicy: ice.policy === 'relay' ? 'relay' : 'all', videoCodec }));
    this.pc.addEventListener('icecandidate', (event) => this.#trickle(event.candidate));
  }

  async #receive(bytes) {
    let message;
    try {
      const { payload } = await this.sealer.open(bytes);
      message = JSON.parse(new TextDecoder().decode(payload));
    } catch (error) {
      // Anything that does not open is not from the camera, or is stale: dropped.
      console.warn('rendezvous: dropped a message:', error instanceof Refused ? error.message : error);
      return;
    }
    const waiter = this.waiting.get(message.call);
    if (!waiter) return;
    this.waiting.delete(message.call);
    clearTimeout(waiter.timer);
    if (message.type === 'error') {
      const error = new Error(`the camera refused: ${message.reason}`);
      error.status = message.status;
      waiter.reject(error);
    } else {
      waiter.resolve(message);
    }
  }

  async #send(message) {
    await this.mqtt.publish(this.cameraTopic, await this.sealer.seal(text.encode(JSON.stringify(message))));
  }

  // One question, one answer (matched by call id). A question that could not be sent
  // leaves nothing waiting.
  async #ask(message) {
    let waiter;
    const reply = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.waiting.get(message.call) === waiter) this.waiting.delete(message.call);
        reject(new Error('the camera did not answer through the rendezvous'));
      }, REPLY_MS);
      waiter = { resolve, reject, timer };
      this.waiting.set(message.call, waiter);
    });
    // Settled while the question is still being sent, or after a failed send, it must
    // not count as unhandled; the caller still gets the rejection through `return`.
    reply.catch(() => {});
    try {
      await this.#send(message);
    } catch (error) {
      clearTimeout(waiter.timer);
      if (this.waiting.get(message.call) === waiter) this.waiting.delete(message.call);
      throw error;
    }
    return reply;
  }

  async start() {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    const answer = await this.#ask({ type: 'offer', call: this.call, sdp: this.pc.localDescription.sdp });
    this.sessionId = answer.session ?? null;
    this.role = answer.role ?? null;
    await this.pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    this.answered = true;
    await this.#flushCandidates();
  }

  async #trickle(candidate) {
    if (candidate && candidate.candidate) this.pendingCandidates.push(candidate);
    if (this.answered) await this.#flushCandidates();
  }

  // Sends what has gathered, in messages of at most MAX_CANDIDATES of one media
  // section each. With the link down they stay for the next flush; a batch whose
  // sending failed goes back too.
  async #flushCandidates() {
    while (this.pendingCandidates.length && this.mqtt.connected) {
      const mid = this.pendingCandidates[0].sdpMid;
      let count = 0;
      while (count < MAX_CANDIDATES && count < this.pendingCandidates.length
        && this.pendingCandidates[count].sdpMid === mid) count += 1;
      const batch = this.pendingCandidates.splice(0, count);
      try {
        await this.#send({ type: 'candidate', call: this.call, mid, candidates: batch.map((c) => c.candidate) });
      } catch (error) {
        this.pendingCandidates.unshift(...batch);
        console.warn('trickle through the rendezvous failed', error);
        return;
      }
    }
  }

  get id() {
    return this.sessionId;
  }

  async stop() {
    this.pc?.close();
    if (this.mqtt.connected) {
      try {
        await this.#send({ type: 'hangup', call: this.call });
      } catch (error) {
        console.warn('hang-up through the rendezvous failed', error);
      }
    }
    this.mqtt.close();
  }
}
