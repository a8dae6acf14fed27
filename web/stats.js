// Turns RTCPeerConnection.getStats() into the few figures a viewer cares about.

export class StatsReader {
  constructor(pc) {
    this.pc = pc;
    this.previous = null;
    this.bitrateKbps = undefined;
  }

  async read() {
    const report = await this.pc.getStats();
    const byId = new Map();
    report.forEach((entry) => byId.set(entry.id, entry));
    const video = [...byId.values()].find((s) => s.type === 'inbound-rtp' && s.kind === 'video');
    const audio = [...byId.values()].find((s) => s.type === 'inbound-rtp' && s.kind === 'audio');
    const pair = [...byId.values()].find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
    const now = performance.now();
    const result = {
      codec: video?.codecId ? byId.get(video.codecId)?.mimeType?.replace('video/', '') : undefined,
      width: video?.frameWidth,
      height: video?.frameHeight,
      fps: video?.framesPerSecond,
      framesDecoded: video?.framesDecoded ?? 0,
      keyFramesDecoded: video?.keyFramesDecoded ?? 0,
      framesDropped: video?.framesDropped ?? 0,
      freezeCount: video?.freezeCount ?? 0,
      freezeSeconds: video?.totalFreezesDuration ?? 0,
      packetsLost: (video?.packetsLost ?? 0) + (audio?.packetsLost ?? 0),
      // Repairs asked of the camera: retransmissions (NACK) and keyframes (PLI).
      nackCount: video?.nackCount ?? 0,
      pliCount: video?.pliCount ?? 0,
      audioPackets: audio?.packetsReceived ?? 0,
      audioCodec: audio?.codecId ? byId.get(audio.codecId)?.mimeType?.replace('audio/', '') : undefined,
      rttMs: pair?.currentRoundTripTime !== undefined ? pair.currentRoundTripTime * 1000 : undefined,
      jitterBufferMs: video?.jitterBufferEmittedCount
        ? (video.jitterBufferDelay / video.jitterBufferEmittedCount) * 1000
        : undefined,
      bitrateKbps: undefined,
      path: undefined,
    };
    if (pair) {
      const local = byId.get(pair.localCandidateId);
      result.path = local ? `${local.candidateType}/${local.protocol}` : undefined;
    }
    const bytes = (video?.bytesReceived ?? 0) + (audio?.bytesReceived ?? 0);
    // Two readings close together (the overlay's and a caller's) would give a noisy
    // or zero rate: the figure is refreshed only over half a second or more.
    if (this.previous && now - this.previous.time >= 500) {
      this.bitrateKbps = ((bytes - this.previous.bytes) * 8) / (now - this.previous.time);
      this.previous = { time: now, bytes };
    } else if (!this.previous) {
      this.previous = { time: now, bytes };
    }
    result.bitrateKbps = this.bitrateKbps;
    return result;
  }
}

// `camera`, when given: the daemon's side of this connection, as its data channel
// sends it ({"type": "stats", ...}: device/peercam/rtc/viewer_stats.py, to_json).
export function formatStats(s, camera) {
  const n = (v, digits = 0) => (v === undefined || v === null ? '–' : Number(v).toFixed(digits));
  const lines = [
    `codec      ${s.codec ?? '–'}${s.audioCodec ? ' + ' + s.audioCodec : ''}`,
    `resolution ${s.width ? `${s.width}x${s.height}` : '–'}`,
    `fps        ${n(s.fps)}`,
    `bitrate    ${n(s.bitrateKbps)} kbit/s`,
    `rtt        ${n(s.rttMs, 1)} ms`,
    `lost       ${n(s.packetsLost)} packets`,
    `jitter buf ${n(s.jitterBufferMs, 1)} ms`,
    `path       ${s.path ?? '–'}`,
  ];
  if (camera) lines.push(...formatCameraSide(camera, n));
  return lines.join('\n');
}

function formatCandidate(c) {
  if (!c) return '–';
  const where = c.address ? ` ${c.address.includes(':') ? `[${c.address}]` : c.address}:${c.port}` : '';
  return `${c.type}/${c.protocol}${where}`;
}

function formatCameraSide(c, n) {
  const percent = c.fractionLost === undefined || c.fractionLost === null
    ? '' : ` (${n(c.fractionLost * 100, 1)} %)`;
  const bitrate = c.sendBitrateBps === undefined || c.sendBitrateBps === null
    ? null : c.sendBitrateBps / 1000;
  const rtt = c.rttSeconds === undefined || c.rttSeconds === null ? null : c.rttSeconds * 1000;
  const pair = c.candidatePair;
  const lines = [
    'camera sees',
    `  rtt      ${n(rtt, 1)} ms`,
    `  lost     ${n(c.packetsLost)} packets${percent}`,
    `  sending  ${n(bitrate)} kbit/s`,
    `  path     ${pair ? `${formatCandidate(pair.local)} → ${formatCandidate(pair.remote)}` : '–'}`,
  ];
  if (c.layer) lines.push(...formatLayer(c.layer, n));
  return lines;
}

// The video layer the camera chose for this viewer's path, and why
// (device/peercam/rtc/layer_chooser.py, LayerStatus).
function formatLayer(l, n) {
  const kbit = (v) => (v === undefined || v === null ? '–' : n(v / 1000));
  const moving = l.target !== l.layer ? ` → ${l.target}` : '';
  const lines = [
    `  layer    ${l.layer}${moving}`,
    `  because  ${l.reason}`,
    `  path est ${kbit(l.estimateBps)} kbit/s`,
  ];
  if (l.probeBps) lines.push(`  probing  +${kbit(l.probeBps)} kbit/s`);
  if (l.limitBps) lines.push(`  held to  ${kbit(l.limitBps)} kbit/s (whole groups of pictures)`);
  return lines;
}
