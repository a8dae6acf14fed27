// Event clips on the page: the list (picture, time, trigger, length), playback in the
// page, download, delete for admins, and the storage they take. Refreshed when the
// push channel says a clip was saved. Away from home the list, the pictures and the
// clips come over the session's data channel (`channel`, web/channel.js) instead.

const TRIGGERS = { ring: 'Doorbell', motion: 'Motion', manual: 'Recorded by hand' };

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
    this.blobUrls = [];
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
    for (const url of this.blobUrls.splice(0)) URL.revokeObjectURL(url);
    this.clips = body.clips;
    this.recordButton.hidden = !(this.isAdmin && body.recording);
    this.storage.textContent = body.storage
      ? describeStorage(body.storage)
      : 'Recording is off: set recording.enabled = true in peercam.toml (or peercam.txt)';
    this.empty.hidden = this.clips.length > 0;
    this.list.replaceChildren(...this.clips.map((clip) => this.item(clip)));
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
        this.bytesUrl('picture', clip).then((url) => { picture.src = url; }).catch(console.warn);
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
    this.player.src = this.channel ? await this.bytesUrl('clip', clip) : clip.video;
    this.player.play().catch(() => {}); // the user pressed Play: sound may start too
  }

  // A clip or its picture over the data channel, whole, as a blob: URL. A transfer
  // cut by a lost connection goes on from where it stopped on the next channel.
  async bytesUrl(op, clip) {
    let parts = [];
    for (let attempt = 0; ; attempt += 1) {
      const channel = this.channel;
      if (!channel) throw new Error('not connected to the camera');
      try {
        await channel.opened();
        const blob = await channel.fetchBytes(op, { clip: clip.id }, { parts });
        const url = URL.createObjectURL(blob);
        this.blobUrls.push(url);
        return url;
      } catch (error) {
        if (!error.parts || attempt >= 30) throw error;
        if (error.parts.length) parts = error.parts;
        await new Promise((resolve) => setTimeout(resolve, 1000)); // the viewer reconnects
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

function button(label, onClick) {
  const element = document.createElement('button');
  element.type = 'button';
  element.textContent = label;
  element.addEventListener('click', onClick);
  return element;
}

function describeStorage({ used, quota, free }) {
  const mb = (bytes) => `${Math.round(bytes / 2 ** 20)} MB`;
  return `Clips use ${mb(used)} of ${mb(quota)}; ${mb(free)} free on the card`;
}
