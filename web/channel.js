// The page's side of the data channel on its peer connection (the camera's side is
// device/peercam/viewer_channel/server.py, whose docstring is the protocol): doorbell
// events and commands, the clip list, clips and pictures in chunks, snapshots. A
// remote viewer needs nothing else.
//
// Nothing here waits forever: a channel can stop answering without closing (a peer
// connection closed by the page may fire no 'close'), so every command and request
// settles within REPLY_MS and a transfer that stops moving fails after STALL_MS.

const CHUNK_HEADER = 12; // request id (4) + offset (8), big endian
export const REPLY_MS = 15000;
export const STALL_MS = 30000;

// Why a transfer failed. `parts` only when it can go on from there (the channel ended
// or stalled); a refusal from the camera (404, 410, 416, 429...) carries its status.
function transferError(reason, { status = 0, parts = null, received = 0 } = {}) {
  const error = new Error(reason);
  error.status = status;
  error.received = received;
  if (parts) error.parts = parts;
  return error;
}

export class ViewerChannel {
  constructor(dataChannel) {
    this.dc = dataChannel;
    this.dc.binaryType = 'arraybuffer';
    this.nextId = 1; // one sequence for commands and requests: a reply's "re" is unique
    this.pending = new Map(); // id -> { settle(reply), timer }: waiting for the reply
    this.transfers = new Map(); // id -> { id, size, received, parts, resolve, reject, type, onProgress, timer }
    this.onevent = () => {};
    this.dc.addEventListener('message', (message) => this.#receive(message.data));
    this.dc.addEventListener('close', () => this.#closed());
  }

  get open() {
    return this.dc.readyState === 'open';
  }

  // Resolves once the channel is open; rejects (with `parts`, nothing lost yet) if it
  // closes first or, given `timeoutMs`, is still not open by then.
  opened({ timeoutMs = null } = {}) {
    if (this.open) return Promise.resolve();
    const closed = () => transferError('the data channel closed', { parts: [] });
    if (this.dc.readyState !== 'connecting') return Promise.reject(closed());
    return new Promise((resolve, reject) => {
      let timer = null;
      const done = (error) => {
        clearTimeout(timer);
        this.dc.removeEventListener('open', onOpen);
        this.dc.removeEventListener('close', onClose);
        if (error) reject(error);
        else resolve();
      };
      const onOpen = () => done(null);
      const onClose = () => done(closed());
      this.dc.addEventListener('open', onOpen);
      this.dc.addEventListener('close', onClose);
      if (timeoutMs !== null) {
        timer = setTimeout(() => done(transferError('the data channel did not open', { parts: [] })), timeoutMs);
      }
    });
  }

  // A doorbell command; resolves to the camera's { ok, reason } (matched by its id),
  // or { ok: false, reason } when no answer comes.
  command(cmd) {
    if (!this.open) return Promise.resolve({ ok: false, reason: 'not connected to the camera' });
    return new Promise((resolve) => {
      const id = this.nextId++;
      this.#expect(id, { cmd, id }, resolve);
    });
  }

  // A request answered by one JSON reply ({ re, ok, ... }); resolves to it, or to
  // { ok: false, status: 0, reason } when the channel ends or no reply comes in time.
  request(op, fields = {}) {
    if (!this.open) return Promise.reject(new Error('not connected to the camera'));
    return new Promise((resolve) => {
      const id = this.nextId++;
      this.#expect(id, { id, op, ...fields }, resolve);
    });
  }

  // The bytes of a clip, a clip's picture or the snapshot, as a Blob. From `offset`
  // with the `parts` already received (a transfer cut by a lost connection resumes on
  // the next channel: the error it rejects with carries `parts` and `received`).
  fetchBytes(op, fields = {}, { parts = [], onProgress = () => {} } = {}) {
    const offset = parts.reduce((sum, part) => sum + part.byteLength, 0);
    if (!this.open) {
      return Promise.reject(transferError('not connected to the camera', { parts, received: offset }));
    }
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const transfer = { id, size: 0, received: offset, parts: [...parts], resolve, reject, type: '', onProgress, timer: null };
      this.#expect(id, { id, op, ...fields, offset }, (reply) => this.#replied(transfer, reply));
    });
  }

  // Sends `message` and calls `settle` once with its reply, or with { ok: false,
  // status: 0 } when the channel ends, the send fails or REPLY_MS pass.
  #expect(id, message, settle) {
    const timer = setTimeout(() => {
      if (this.pending.get(id)?.timer !== timer) return;
      this.pending.delete(id);
      settle({ ok: false, status: 0, reason: 'the camera did not answer in time', timedOut: true });
    }, REPLY_MS);
    this.pending.set(id, { settle, timer });
    try {
      this.dc.send(JSON.stringify(message));
    } catch (error) {
      clearTimeout(timer);
      this.pending.delete(id);
      settle({ ok: false, status: 0, reason: `could not send to the camera: ${error.message}` });
    }
  }

  #replied(transfer, reply) {
    if (!reply.ok) {
      // No answer (the channel ended, or none in time) can be tried again from the same
      // parts; the camera's refusal is its own answer.
      if (reply.timedOut) this.#cancel(transfer.id);
      const resumable = !reply.status;
      transfer.reject(transferError(reply.reason, {
        status: reply.status ?? 0,
        parts: resumable ? transfer.parts : null,
        received: transfer.received,
      }));
      return;
    }
    transfer.size = reply.size;
    transfer.type = reply.content_type;
    this.transfers.set(transfer.id, transfer);
    this.#watch(transfer);
    this.#finishIfDone(transfer);
  }

  // A transfer whose chunks stop coming fails after STALL_MS, resumable from its parts.
  #watch(transfer) {
    clearTimeout(transfer.timer);
    transfer.timer = setTimeout(() => {
      if (this.transfers.get(transfer.id) !== transfer) return;
      this.transfers.delete(transfer.id);
      this.#cancel(transfer.id);
      transfer.reject(transferError(`no data from the camera for ${STALL_MS / 1000} s`, {
        parts: transfer.parts,
        received: transfer.received,
      }));
    }, STALL_MS);
  }

  // Tells the camera to stop sending request `id` (and free its place): the page has
  // given up on it. Its reply, if any, finds nobody waiting.
  #cancel(id) {
    if (!this.open) return;
    try {
      this.dc.send(JSON.stringify({ id, op: 'cancel' }));
    } catch {
      // the channel is going: nothing left to stop
    }
  }

  #receive(data) {
    if (data instanceof ArrayBuffer) {
      if (data.byteLength < CHUNK_HEADER) return;
      const id = new DataView(data).getUint32(0);
      const transfer = this.transfers.get(id);
      if (!transfer) return;
      const chunk = new Uint8Array(data, CHUNK_HEADER);
      transfer.parts.push(chunk);
      transfer.received += chunk.byteLength;
      transfer.onProgress(transfer.received, transfer.size);
      this.#watch(transfer);
      this.#finishIfDone(transfer);
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message === null || typeof message !== 'object') return;
    if ('re' in message || message.type === 'result') {
      const waiting = this.pending.get(message.re);
      if (waiting) {
        this.pending.delete(message.re);
        clearTimeout(waiting.timer);
        waiting.settle(message);
        return;
      }
      // A refusal after a transfer's chunks began: it ended short (the file went away
      // meanwhile, 410) or was stopped. Not resumable: no `parts`.
      const transfer = this.transfers.get(message.re);
      if (transfer && message.ok === false) {
        this.transfers.delete(transfer.id);
        clearTimeout(transfer.timer);
        transfer.reject(transferError(message.reason ?? 'the camera stopped the transfer', {
          status: message.status ?? 0,
          received: message.received ?? transfer.received,
        }));
      }
      return; // a reply nobody waits for any more (timed out, cancelled)
    }
    this.onevent(message);
  }

  #finishIfDone(transfer) {
    if (transfer.received < transfer.size) return;
    this.transfers.delete(transfer.id);
    clearTimeout(transfer.timer);
    transfer.resolve(new Blob(transfer.parts, { type: transfer.type }));
  }

  #closed() {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const waiting of pending) {
      clearTimeout(waiting.timer);
      waiting.settle({ ok: false, status: 0, reason: 'the connection to the camera ended' });
    }
    const transfers = [...this.transfers.values()];
    this.transfers.clear();
    for (const transfer of transfers) {
      clearTimeout(transfer.timer);
      transfer.reject(transferError('the connection to the camera ended mid-transfer', {
        parts: transfer.parts,
        received: transfer.received,
      }));
    }
  }
}
