// The doorbell on the page: rings, answer / decline / hang up, talk, open the door.
// Events arrive over the push channel (/events); commands go back on it, each naming
// this page's live viewer session, and the daemon answers each with a result. Away
// from home (signaling through the rendezvous) the session's data channel carries
// both instead (useChannel): it is the session's own, so commands name nothing.

const RECONNECT_MS = 1000;
const HOLD_MS = 300; // pressed longer than this, Talk is push-to-talk; shorter, a toggle

export class Doorbell {
  constructor(viewer, ui) {
    this.viewer = viewer;
    this.ui = ui;
    this.socket = null;
    this.channel = null;
    this.waiting = [];
    this.microphone = null;
    this.inCall = false;
    this.talking = false;
    this.ringTone = null;
    this.events = [];
    this.ringing = false;
    // Set when the page was opened from a ring's notification: answer as soon as the
    // viewer session is live and the camera says it still rings.
    this.autoAnswer = false;
  }

  answerWhenReady() {
    if (!this.autoAnswer || !this.ringing || !this.viewer.session) return;
    if (!this.connected) return;
    if (this.viewer.session.pc.connectionState !== 'connected') return;
    this.autoAnswer = false;
    this.answer().catch((error) => console.warn(error));
  }

  get connected() {
    return this.channel ? this.channel.open : this.socket?.readyState === WebSocket.OPEN;
  }

  // The data channel to use instead of the WebSocket, or null to use the WebSocket.
  useChannel(channel) {
    this.channel = channel;
    if (channel) {
      this.socket?.close();
      channel.opened().then(() => this.answerWhenReady()).catch(() => {});
    }
  }

  connect() {
    if (this.socket || this.channel) return;
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/events`);
    this.socket = socket;
    socket.addEventListener('message', (message) => this.receive(JSON.parse(message.data)));
    socket.addEventListener('close', () => {
      for (const pending of this.waiting.splice(0)) pending.resolve({ ok: false, reason: 'push channel closed' });
      this.socket = null;
      if (!this.channel) setTimeout(() => this.connect(), RECONNECT_MS);
    });
  }

  async command(cmd) {
    if (this.channel) {
      const result = await this.channel.command(cmd);
      if (!result.ok) this.ui.say(result.reason);
      return result;
    }
    return new Promise((resolve) => {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
        resolve({ ok: false, reason: 'not connected to the camera' });
        return;
      }
      this.waiting.push({ cmd, resolve });
      this.socket.send(JSON.stringify({ cmd, session: this.viewer.session?.id ?? null }));
    });
  }

  receive(event) {
    this.events.push(event);
    switch (event.type) {
      case 'result': {
        const index = this.waiting.findIndex((p) => p.cmd === event.cmd);
        const [pending] = index >= 0 ? this.waiting.splice(index, 1) : this.waiting.splice(0, 1);
        pending?.resolve(event);
        if (!event.ok) this.ui.say(event.reason);
        break;
      }
      case 'state':
        if (event.call === 'ringing') this.startRinging();
        else this.autoAnswer = false; // opened too late: nothing rings any more
        if (event.talker) this.ui.say(`${event.talker} is talking`);
        break;
      case 'ring':
        if (event.call === 'idle' || event.call === 'ringing') this.startRinging();
        else this.ui.say('Someone rang again');
        break;
      case 'answered':
        this.stopRinging();
        if (!this.inCall) this.ui.say(`Answered by ${event.by}`);
        break;
      case 'declined':
        this.stopRinging();
        this.ui.say(`Declined by ${event.by}`);
        break;
      case 'missed':
        this.stopRinging();
        this.ui.say('Missed ring: nobody answered');
        break;
      case 'ended':
        this.endCall();
        this.ui.say('Call ended');
        break;
      case 'talker':
        this.ui.say(event.talker ? `${event.talker} is talking` : 'Nobody is talking');
        break;
      case 'door':
        this.ui.say(event.opened ? `Door opened by ${event.by}` : 'The door could not be opened');
        break;
      case 'motion':
        this.ui.say('Motion at the door');
        break;
      case 'clip':
        this.ui.clipSaved?.(event);
        break;
      default:
        break;
    }
  }

  startRinging() {
    this.ringing = true;
    this.answerWhenReady();
    this.ui.showRing(true);
    if (!this.ringTone) this.ringTone = playRingTone();
    if ('Notification' in window && Notification.permission === 'granted' && document.hidden) {
      new Notification('Someone is at the door', { tag: 'peercam-ring' });
    }
  }

  stopRinging() {
    this.ringing = false;
    // The ring this page was opened for is over: a later one is not answered unasked.
    this.autoAnswer = false;
    this.ui.showRing(false);
    this.ringTone?.stop();
    this.ringTone = null;
  }

  async answer() {
    askNotificationPermission();
    const result = await this.command('answer');
    if (!result.ok) return;
    this.inCall = true;
    this.ui.showCall(true);
    await this.openMicrophone();
  }

  async decline() {
    await this.command('decline');
  }

  async hangUp() {
    await this.command('hangup');
    this.endCall();
  }

  endCall() {
    if (this.inCall) {
      this.inCall = false;
      this.ui.showCall(false);
      this.closeMicrophone();
    }
  }

  async talk(on) {
    if (this.inCall || on === this.talking) return;
    askNotificationPermission();
    if (on) {
      // The microphone first: a refused permission must not hold the floor.
      if (!(await this.openMicrophone())) return;
      const result = await this.command('talk');
      this.talking = result.ok;
      if (!result.ok) this.closeMicrophone();
    } else {
      this.talking = false;
      this.closeMicrophone();
      await this.command('untalk');
    }
    this.ui.showTalking(this.talking);
  }

  async openDoor() {
    const result = await this.command('open-door');
    if (result.ok) this.ui.say('Door opened');
  }

  async openMicrophone() {
    try {
      this.microphone ??= await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true },
      });
      await this.viewer.session?.audio.sender.replaceTrack(this.microphone.getAudioTracks()[0]);
      return true;
    } catch (error) {
      this.ui.say(`Microphone unavailable: ${error.message ?? error}`);
      return false;
    }
  }

  closeMicrophone() {
    this.viewer.session?.audio.sender.replaceTrack(null).catch(() => {});
    this.microphone?.getTracks().forEach((track) => track.stop());
    this.microphone = null;
  }

  // Talk: hold for push-to-talk, or click once to start and again to stop.
  bindTalkButton(button) {
    let pressedAt = 0;
    let startedByPress = false;
    button.addEventListener('pointerdown', async () => {
      pressedAt = performance.now();
      startedByPress = !this.talking;
      if (startedByPress) await this.talk(true);
    });
    button.addEventListener('pointerup', async () => {
      const held = performance.now() - pressedAt > HOLD_MS;
      if (startedByPress ? held : true) await this.talk(false);
    });
  }
}

function askNotificationPermission() {
  if ('Notification' in window && Notification.permission === 'default') {
    Notification.requestPermission().catch(() => {});
  }
}

// Two-tone chime, repeated until stopped; silent where the page may not play sound yet.
function playRingTone() {
  let context;
  try {
    context = new AudioContext();
  } catch {
    return { stop() {} };
  }
  const chime = () => {
    [660, 880].forEach((frequency, index) => {
      const oscillator = context.createOscillator();
      const gain = context.createGain();
      oscillator.frequency.value = frequency;
      gain.gain.setValueAtTime(0.2, context.currentTime + index * 0.4);
      gain.gain.exponentialRampToValueAtTime(0.001, context.currentTime + index * 0.4 + 0.35);
      oscillator.connect(gain).connect(context.destination);
      oscillator.start(context.currentTime + index * 0.4);
      oscillator.stop(context.currentTime + index * 0.4 + 0.4);
    });
  };
  chime();
  const timer = setInterval(chime, 2000);
  return {
    stop() {
      clearInterval(timer);
      context.close().catch(() => {});
    },
  };
}
