// Event clips on the page: the list (picture, time, trigger, length), playback in the
// page, download, delete for admins, and the storage they take. Refreshed when the
// push channel says a clip was saved. Away from home the list, the pictures and the
// clips come over the session's data channel (`channel`, web/channel.js) instead.

import { button } from './dom.js';

const TRIGGERS = { ring: 'Doorbell', motion: 'Motion', manual: 'Recorded by hand' };
// The camera sends at most 4 transfers at once per channel (MAX_TRANSFERS in
// device/peercam/viewer_channel/server.py): pictures take 3, leaving one for a clip.
const PICTURES_AT_ONCE = 3;
// A transfer the channel could not finish is tried again (from what arrived) for as
// long as the viewer may take to reconnect, and a busy camera (429) is waited out;
// the camera saying the file is not there, or not any more, or failing to read it
// (500), is final.
const RETRY_FOR_MS = 120000;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 5000;
const OPEN_WAIT_MS = 5000;
const FATAL = new Set([400, 403, 404, 410, 416, 500]);

export class ClipList {
  constructor(elements) {
    this.list = elements.list;
    this.player = elements.player;
    this.storage = elements.storage;
    this.empty = elements.empty;
    this.recordButton = elements.recordButton;
    this.isAdmin = false;
    this.clips = [];
    this.channel = null;
    this.blobUrls = []; // clips fetched over the channel (played or downloaded)
    this.pictureUrls = new Map(); // clip id -> Promise of its picture's blob: URL
    this.pictureQueue = []; // { picture, clip } waiting for a place
    this.picturesLoading = 0;
  }

  async listing() {
    if (this.channel) {
      const reply = await this.channel.request('clips');
      return reply.ok ? reply : null;
    }
    const response = await fetch('/api/events');
    return response.ok ? response.json() : null;
  }

  async refresh() {
    const body = await this.listing();
    if (!body) return;
    this.forget(body.clips);
    this.clips = body.clips;
    this.recordButton.hidden = !(this.isAdmin && body.recording);
    this.storage.textContent = body.storage
      ? describeStorage(body.storage)
      : 'Recording is off: set recording.enabled = true in peercam.toml (or peercam.txt)';
    this.empty.hidden = this.clips.length > 0;
    this.list.replaceChildren(...this.clips.map((clip) => this.item(clip)));
  }

  // Frees the blob: URLs the new list no longer shows: pictures of clips gone (the
  // others are kept for the new list), and every fetched clip but the one playing.
  forget(clips) {
    this.pictureQueue.length = 0; // the old list's pictures not yet asked for
    const listed = new Set(this.channel ? clips.map((clip) => clip.id) : []);
    for (const [id, url] of this.pictureUrls) {
      if (listed.has(id)) continue;
      this.pictureUrls.delete(id);
      url.then((href) => URL.revokeObjectURL(href), () => {});
    }
    const playing = this.player.getAttribute('src');
    this.blobUrls = this.blobUrls.filter((url) => {
      if (url === playing) return true;
      URL.revokeObjectURL(url);
      return false;
    });
  }

  // A picture over the data channel: a few at a time, in the list's order.
  loadPicture(picture, clip) {
    this.pictureQueue.push({ picture, clip });
    this.#nextPictures();
  }

  #nextPictures() {
    while (this.picturesLoading < PICTURES_AT_ONCE && this.pictureQueue.length) {
      const { picture, clip } = this.pictureQueue.shift();
      this.picturesLoading += 1;
      this.pictureUrl(clip)
        .then((url) => { picture.src = url; })
        .catch((error) => {
          if (error.local) picture.src = clip.picture; // home again: the camera serves it
          else console.warn(error);
        })
        .finally(() => {
          this.picturesLoading -= 1;
          this.#nextPictures();
        });
    }
  }

  pictureUrl(clip) {
    let url = this.pictureUrls.get(clip.id);
    if (!url) {
      url = this.bytesUrl('picture', clip, { keep: false });
      this.pictureUrls.set(clip.id, url);
      // A failure is not kept: the next refresh asks again.
      url.catch(() => {
        if (this.pictureUrls.get(clip.id) === url) this.pictureUrls.delete(clip.id);
      });
    }
    return url;
  }

  item(clip) {
    const item = document.createElement('li');
    item.className = 'clip';
    item.dataset.id = clip.id;
    if (clip.picture) {
      const picture = document.createElement('img');
      picture.alt = '';
      picture.loading = 'lazy';
      if (this.channel) {
        this.loadPicture(picture, clip);
      } else {
        picture.src = clip.picture;
      }
      item.append(picture);
    }
    const text = document.createElement('div');
    const when = new Date(clip.event_at * 1000).toLocaleString();
    const what = TRIGGERS[clip.trigger] ?? clip.trigger;
    text.textContent = `${when} · ${what} · ${Math.round(clip.duration)} s`;
    const actions = document.createElement('div');
    const play = button('Play', () => this.play(clip));
    play.className = 'play';
    const download = document.createElement('a');
    download.href = `${clip.video}?download`;
    download.textContent = 'Download';
    download.className = 'download';
    if (this.channel) {
      download.download = `peercam-${clip.id}.mp4`;
      download.addEventListener('click', async (event) => {
        if (download.href.startsWith('blob:')) return;
        event.preventDefault();
        download.href = await this.bytesUrl('clip', clip);
        download.click();
      });
    }
    actions.append(play, download);
    if (this.isAdmin) {
      const remove = button('Delete', () => this.remove(clip));
      remove.className = 'reject delete';
      actions.append(remove);
    }
    item.append(text, actions);
    return item;
  }

  async play(clip) {
    this.player.hidden = false;
    this.player.dataset.id = clip.id;
    let src = clip.video;
    if (this.channel) {
      try {
        src = await this.bytesUrl('clip', clip);
      } catch (error) {
        if (!error.local) throw error; // home again: the camera serves it
      }
      if (this.player.dataset.id !== clip.id) return; // another clip was chosen meanwhile
    }
    const previous = this.player.getAttribute('src');
    this.player.src = src;
    if (previous !== src && this.blobUrls.includes(previous)) {
      this.blobUrls.splice(this.blobUrls.indexOf(previous), 1);
      URL.revokeObjectURL(previous);
    }
    this.player.play().catch(() => {}); // the user pressed Play: sound may start too
  }

  // A clip or its picture over the data channel, whole, as a blob: URL (kept in
  // blobUrls to be freed by refresh() unless `keep` is false). A transfer cut by a
  // lost connection, or a channel gone before it answered, is tried again on the
  // viewer's next channel, from what had arrived, for up to RETRY_FOR_MS; a refusal
  // (no such clip, gone meanwhile, a bad offset: 404/410/416) is not.
  async bytesUrl(op, clip, { keep = true } = {}) {
    let parts = [];
    const deadline = Date.now() + RETRY_FOR_MS;
    for (let wait = RETRY_FIRST_MS; ; wait = Math.min(wait * 2, RETRY_MAX_MS)) {
      const channel = this.channel;
      if (!channel) throw Object.assign(new Error('not connected to the camera through the rendezvous'), { local: true });
      try {
        // A channel that never opens (its session gone) must not hold the retries.
        await channel.opened({ timeoutMs: OPEN_WAIT_MS });
        const blob = await channel.fetchBytes(op, { clip: clip.id }, { parts });
        const url = URL.createObjectURL(blob);
        if (keep) this.blobUrls.push(url);
        return url;
      } catch (error) {
        if (FATAL.has(error.status) || Date.now() + wait >= deadline) throw error;
        if (error.parts?.length) parts = error.parts;
        await new Promise((resolve) => setTimeout(resolve, wait)); // the viewer reconnects
      }
    }
  }

  async remove(clip) {
    if (!confirm(`Delete the clip of ${new Date(clip.event_at * 1000).toLocaleString()}?`)) return;
    const response = await fetch(clip.video, { method: 'DELETE' });
    if (this.player.dataset.id === clip.id) {
      this.player.removeAttribute('src');
      this.player.hidden = true;
    }
    if (!response.ok && response.status !== 404) alert((await response.text()).trim());
    await this.refresh();
  }

  async recordNow() {
    const response = await fetch('/api/events', { method: 'POST' });
    return response.ok ? null : (await response.text()).trim();
  }
}

function describeStorage({ used, quota, free }) {
  const mb = (bytes) => `${Math.round(bytes / 2 ** 20)} MB`;
  return `Clips use ${mb(used)} of ${mb(quota)}; ${mb(free)} free on the card`;
}
