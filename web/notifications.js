// The app side of notifications: registers the service worker (installable app,
// offline shell), subscribes this device to the camera's pushes, and the settings
// panel: does this device get notifications, what for, quiet hours, send a test.

const $ = (id) => document.getElementById(id);

function base64UrlToBytes(text) {
  const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function deviceName() {
  const ua = navigator.userAgent;
  const system = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS'
    : /Mac OS X/.test(ua) ? 'macOS' : /Windows/.test(ua) ? 'Windows' : /Linux/.test(ua) ? 'Linux' : 'a device';
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox'
    : /Chrome\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'a browser';
  return `${browser} on ${system}`;
}

async function api(path, method = 'GET', body = undefined) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = JSON.parse(text); } catch { data = { error: text.trim() }; }
  if (!response.ok) throw new Error(data?.error || text.trim() || `HTTP ${response.status}`);
  return data;
}

export class Notifications {
  constructor({ onNotificationClick } = {}) {
    this.registration = null;
    this.server = null; // what GET /api/push said
    this.subscription = null;
    this.onNotificationClick = onNotificationClick;
  }

  get supported() {
    return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
  }

  // Never throws: a page without a worker still shows the camera.
  async start() {
    if (!('serviceWorker' in navigator)) return;
    navigator.serviceWorker.addEventListener('message', (event) => {
      if (event.data?.type === 'peercam-notification') this.onNotificationClick?.(event.data);
    });
    try {
      this.registration = await navigator.serviceWorker.register('/sw.js', { scope: '/' });
      await navigator.serviceWorker.ready;
    } catch (error) {
      console.warn('service worker', error);
      return;
    }
    await this.refresh();
    // A device that said yes before, logging in again (or after its subscription was
    // dropped by a logout), is subscribed again without asking.
    if (this.subscription && this.server?.enabled && !this.known()) {
      await this.sendSubscription().catch((error) => console.warn(error));
    }
  }

  known() {
    return Boolean(this.subscription && this.server?.endpoints.includes(this.subscription.endpoint));
  }

  async refresh() {
    try {
      this.server = await api('/api/push');
    } catch (error) {
      console.warn(error);
      this.server = null;
    }
    this.subscription = this.supported && this.registration
      ? await this.registration.pushManager.getSubscription().catch(() => null)
      : null;
  }

  // What the settings say about this device, in words.
  describe() {
    if (!this.supported) {
      return /iPhone|iPad/.test(navigator.userAgent)
        ? 'To get notifications on iOS, add this page to the home screen (Share, Add to Home Screen) and open it from there.'
        : 'This browser cannot receive notifications from the camera.';
    }
    if (!this.server) return 'The camera did not answer.';
    if (!this.server.enabled) return 'Notifications are turned off on the camera (webpush.enabled).';
    if (Notification.permission === 'denied') return 'Notifications are blocked for this site in the browser settings.';
    return this.known() ? 'This device gets notifications.' : 'This device does not get notifications.';
  }

  async enable() {
    if (Notification.permission !== 'granted') {
      const answer = await Notification.requestPermission();
      if (answer !== 'granted') throw new Error('notifications were not allowed');
    }
    this.subscription = await this.registration.pushManager.getSubscription();
    const key = base64UrlToBytes(this.server.key);
    const current = this.subscription?.options?.applicationServerKey;
    if (this.subscription && current && !sameBytes(new Uint8Array(current), key)) {
      await this.subscription.unsubscribe(); // made for another key (the camera was reset)
      this.subscription = null;
    }
    this.subscription ??= await this.registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: key,
    });
    await this.sendSubscription();
  }

  async sendSubscription() {
    await api('/api/push/subscribe', 'POST', { ...this.subscription.toJSON(), device: deviceName() });
    await this.refresh();
  }

  async disable() {
    if (this.subscription) {
      await api('/api/push/unsubscribe', 'POST', { endpoint: this.subscription.endpoint });
      await this.subscription.unsubscribe().catch(() => {});
    }
    await this.refresh();
  }

  async test() {
    const result = await api('/api/push/test', 'POST', { endpoint: this.subscription?.endpoint ?? null });
    return result.failed.length ? `Test not delivered: ${result.failed.join(', ')}` : 'Test sent: it should appear in a moment';
  }

  async savePreferences(preferences) {
    this.server = await api('/api/push/preferences', 'PUT', preferences);
  }

  // The settings panel (index.html #settings).
  bindPanel(say) {
    const render = () => {
      $('push-state').textContent = this.describe();
      const usable = this.supported && this.server?.enabled && Notification.permission !== 'denied';
      $('push-enable').hidden = !usable || this.known();
      $('push-disable').hidden = !usable || !this.known();
      $('push-test').hidden = !this.known();
      const preferences = this.server?.preferences;
      $('push-preferences').hidden = !preferences || !this.server?.enabled;
      if (preferences) {
        $('push-motion').checked = preferences.motion;
        $('push-clips').checked = preferences.clips;
        $('push-quiet-start').value = preferences.quiet_start ?? '';
        $('push-quiet-end').value = preferences.quiet_end ?? '';
      }
    };
    const act = (button, action) => button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        const said = await action();
        if (said) say(said);
      } catch (error) {
        say(String(error.message ?? error));
      } finally {
        button.disabled = false;
        render();
      }
    });
    $('toggle-settings').addEventListener('click', async () => {
      const panel = $('settings');
      panel.hidden = !panel.hidden;
      $('toggle-settings').setAttribute('aria-pressed', String(!panel.hidden));
      if (!panel.hidden) {
        await this.refresh();
        render();
      }
    });
    $('close-settings').addEventListener('click', () => {
      $('settings').hidden = true;
      $('toggle-settings').setAttribute('aria-pressed', 'false');
    });
    act($('push-enable'), () => this.enable());
    act($('push-disable'), () => this.disable());
    act($('push-test'), () => this.test());
    $('push-preferences').addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        await this.savePreferences({
          motion: $('push-motion').checked,
          clips: $('push-clips').checked,
          quiet_start: $('push-quiet-start').value || null,
          quiet_end: $('push-quiet-end').value || null,
        });
        say('Notification settings saved');
      } catch (error) {
        say(String(error.message ?? error));
      }
      render();
    });
    render();
  }
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}
