// A WHEP client (draft-ietf-wish-whep): POST an offer, PATCH trickled candidates,
// DELETE to hang up. Used by the viewer page; no dependency on the page itself.

import { ViewerChannel } from './channel.js';

export class WhepSession {
  // The daemon's ICE servers (with TURN credentials minted for this page) come first,
  // from an OPTIONS request: the offer can only gather relay candidates with them.
  static async create(endpoint, options = {}) {
    let iceServers = [];
    let iceTransportPolicy = 'all';
    try {
      const response = await fetch(endpoint, { method: 'OPTIONS' });
      iceServers = parseIceLinks(response.headers.get('Link'));
      iceTransportPolicy = response.headers.get('Peercam-Ice-Transport-Policy') === 'relay' ? 'relay' : 'all';
    } catch (error) {
      console.warn('no ICE server configuration', error);
    }
    return new WhepSession(endpoint, { ...options, iceServers, iceTransportPolicy });
  }

  constructor(endpoint, { videoCodec = null, iceServers = [], iceTransportPolicy = 'all' } = {}) {
    this.endpoint = endpoint;
    this.location = null;
    this.pendingCandidates = [];
    this.ufrag = null;
    this.path = 'direct';
    Object.assign(this, viewerPeer({ iceServers, iceTransportPolicy, videoCodec }));
    this.pc.addEventListener('icecandidate', (event) => this.#trickle(event.candidate));
  }

  async start() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.ufrag = /a=ice-ufrag:(\S+)/.exec(offer.sdp)?.[1] ?? null;
    // Sent at once, without waiting for candidate gathering: the daemon's candidates
    // come back in the answer and ours follow by PATCH, which saves a round of waiting.
    const response = await fetch(this.endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: this.pc.localDescription.sdp,
    });
    if (response.status !== 201) {
      const reason = (await response.text()).trim();
      const error = new Error(`WHEP ${response.status}: ${reason}`);
      error.status = response.status;
      throw error;
    }
    this.location = new URL(response.headers.get('Location'), this.endpoint).href;
    await this.pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
    await this.#flushCandidates();
  }

  async #trickle(candidate) {
    if (candidate && candidate.candidate) this.pendingCandidates.push(candidate);
    if (this.location) await this.#flushCandidates();
  }

  async #flushCandidates() {
    const batch = this.pendingCandidates.splice(0);
    if (!batch.length || !this.location) return;
    const lines = [`a=ice-ufrag:${this.ufrag}`];
    let mid = null;
    for (const c of batch) {
      if (c.sdpMid !== mid) {
        mid = c.sdpMid;
        lines.push('m=audio 9 UDP/TLS/RTP/SAVPF 0', `a=mid:${mid}`);
      }
      lines.push(`a=${c.candidate}`);
    }
    try {
      await fetch(this.location, {
        method: 'PATCH',
        headers: { 'Content-Type': 'application/trickle-ice-sdpfrag' },
        body: lines.join('\r\n') + '\r\n',
      });
    } catch (error) {
      console.warn('trickle failed', error);
    }
  }

  get id() {
    return this.location ? this.location.split('/').pop() : null;
  }

  async stop({ keepalive = false } = {}) {
    const location = this.location;
    this.location = null;
    this.pc.close();
    if (location) {
      try {
        await fetch(location, { method: 'DELETE', keepalive });
      } catch (error) {
        console.warn('hang-up failed', error);
      }
    }
  }
}

// A viewer's peer connection, whichever way it signals: { pc, audio, channel, iceErrors }.
export function viewerPeer({ iceServers = [], iceTransportPolicy = 'all', videoCodec = null } = {}) {
  // Never a default public STUN server: only what the daemon says (maybe nothing).
  const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy, bundlePolicy: 'max-bundle' });
  const iceErrors = [];
  // A TURN server refusing us (wrong or expired credentials) is worth telling the user.
  pc.addEventListener('icecandidateerror', (event) => {
    if (event.url && /^turns?:/.test(event.url)) {
      iceErrors.push(`${event.url}: ${event.errorCode} ${event.errorText}`.trim());
    }
  });
  // Two-way from the start, with no track: talking later is a replaceTrack(),
  // which needs no renegotiation (WHEP has none).
  const audio = pc.addTransceiver('audio', { direction: 'sendrecv' });
  const video = pc.addTransceiver('video', { direction: 'recvonly' });
  if (videoCodec) preferCodec(video, `video/${videoCodec}`);
  // Events, commands, clips and pictures ride on the peer connection too
  // (web/channel.js): before the offer, so that it carries the channel.
  const channel = new ViewerChannel(pc.createDataChannel('peercam'));
  return { pc, audio, channel, iceErrors };
}

function preferCodec(transceiver, mimeType) {
  const capabilities = RTCRtpReceiver.getCapabilities('video');
  if (!capabilities || !transceiver.setCodecPreferences) return;
  const wanted = capabilities.codecs.filter((c) => c.mimeType.toLowerCase() === mimeType.toLowerCase());
  const rest = capabilities.codecs.filter((c) => /rtx|red|ulpfec/i.test(c.mimeType));
  if (wanted.length) transceiver.setCodecPreferences([...wanted, ...rest]);
}

// RFC 9725 section 4.6: Link: <turn:host>; rel="ice-server"; username="u"; credential="p"
export function parseIceLinks(header) {
  if (!header) return [];
  const servers = [];
  for (const part of header.split(/,(?=\s*<)/)) {
    const url = /<([^>]+)>/.exec(part)?.[1];
    if (!url || !/rel="?ice-server"?/.test(part)) continue;
    const server = { urls: url };
    const username = /username="([^"]*)"/.exec(part)?.[1];
    const credential = /credential="([^"]*)"/.exec(part)?.[1];
    if (username !== undefined) server.username = username;
    if (credential !== undefined) server.credential = credential;
    servers.push(server);
  }
  return servers;
}
