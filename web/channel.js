// The page's side of the data channel on its peer connection (the camera's side is
// device/peercam/viewer_channel/server.py, whose docstring is the protocol): doorbell
// events and commands, the clip list, clips and pictures in chunks, snapshots. A
// remote viewer needs nothing else.

const CHUNK_HEADER = 12; // request id (4) + offset (8), big endian

export class ViewerChannel {
  constructor(dataChannel) {
    this.dc = dataChannel;
    this.dc.binaryType = 'arraybuffer';
    this.nextId = 1;
    this.replies = new Map(); // id -> resolve
    this.transfers = new Map(); // id -> { size, received, parts, resolve, reject, type, onProgress }
    this.commands = []; // { cmd, resolve }, answered in order
    this.onevent = () => {};
    this.dc.addEventListener('message', (message) => this.#receive(message.data));
    this.dc.addEventListener('close', () => this.#closed());
  }

  get open() {
    return this.dc.readyState === 'open';
  }

  opened() {
    if (this.open) return Promise.resolve();
    if (this.dc.readyState !== 'connecting') {
      return Promise.reject(Object.assign(new Error('the data channel closed'), { parts: [] }));
    }
    return new Promise((resolve, reject) => {
      this.dc.addEventListener('open', () => resolve(), { once: true });
      this.dc.addEventListener('close', () => reject(Object.assign(new Error('the data channel closed'), { parts: [] })), { once: true });
    });
  }

  // A doorbell command; resolves to the camera's { ok, reason }.
  command(cmd) {
    if (!this.open) return Promise.resolve({ ok: false, reason: 'not connected to the camera' });
    return new Promise((resolve) => {
      this.commands.push({ cmd, resolve });
      this.dc.send(JSON.stringify({ cmd }));
    });
  }

  // A request answered by one JSON reply ({ re, ok, ... }).
  request(op, fields = {}) {
    if (!this.open) return Promise.reject(new Error('not connected to the camera'));
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.replies.set(id, resolve);
      this.dc.send(JSON.stringify({ id, op, ...fields }));
    });
  }

  // The bytes of a clip, a clip's picture or the snapshot, as a Blob. From `offset`
  // with the `parts` already received (a transfer cut by a lost connection resumes on
  // the next channel: the error it rejects with carries `parts` and `received`).
  async fetchBytes(op, fields = {}, { parts = [], onProgress = () => {} } = {}) {
    const offset = parts.reduce((sum, part) => sum + part.byteLength, 0);
    const id = this.nextId;
    const reply = await this.request(op, { ...fields, offset });
    if (!reply.ok) {
      const error = new Error(reply.reason);
      error.status = reply.status;
      throw error;
    }
    return new Promise((resolve, reject) => {
      const transfer = { size: reply.size, received: offset, parts: [...parts], resolve, reject, type: reply.content_type, onProgress };
      this.transfers.set(id, transfer);
      this.#finishIfDone(id, transfer);
    });
  }

  #receive(data) {
    if (data instanceof ArrayBuffer) {
      const view = new DataView(data);
      const id = view.getUint32(0);
      const transfer = this.transfers.get(id);
      if (!transfer) return;
      const chunk = new Uint8Array(data, CHUNK_HEADER);
      transfer.parts.push(chunk);
      transfer.received += chunk.byteLength;
      transfer.onProgress(transfer.received, transfer.size);
      this.#finishIfDone(id, transfer);
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if ('re' in message) {
      const resolve = this.replies.get(message.re);
      this.replies.delete(message.re);
      resolve?.(message);
    } else if (message.type === 'result') {
      const index = this.commands.findIndex((pending) => pending.cmd === message.cmd);
      const [pending] = this.commands.splice(index >= 0 ? index : 0, 1);
      pending?.resolve(message);
    } else {
      this.onevent(message);
    }
  }

  #finishIfDone(id, transfer) {
    if (transfer.received < transfer.size) return;
    this.transfers.delete(id);
    transfer.resolve(new Blob(transfer.parts, { type: transfer.type }));
  }

  #closed() {
    for (const resolve of this.replies.values()) resolve({ ok: false, status: 0, reason: 'the connection to the camera ended' });
    this.replies.clear();
    for (const pending of this.commands.splice(0)) pending.resolve({ ok: false, reason: 'the connection to the camera ended' });
    for (const transfer of this.transfers.values()) {
      const error = new Error('the connection to the camera ended mid-transfer');
      error.parts = transfer.parts;
      error.received = transfer.received;
      transfer.reject(error);
    }
    this.transfers.clear();
  }
}
