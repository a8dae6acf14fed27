// The service worker: the page as an installable app that opens without the camera
// (saying it is unreachable), and the doorbell's push messages shown as notifications.
// Served at /sw.js so that its scope is the whole site; no build step, no imports.

const CACHE = 'peercam-shell-v1';
const SHELL = [
  '/',
  '/ui/offline.html',
  '/ui/viewer.css',
  '/ui/viewer.js',
  '/ui/whep.js',
  '/ui/stats.js',
  '/ui/doorbell.js',
  '/ui/clips.js',
  '/ui/dom.js',
  '/ui/notifications.js',
  '/ui/mqtt_ws.js',
  '/ui/devices.js',
  '/ui/remote_crypto.js',
  '/ui/remote_store.js',
  '/ui/remote_session.js',
  '/ui/channel.js',
  '/ui/icon-192.png',
  '/ui/badge-96.png',
];
// A camera out of reach (the phone away from home) often leaves a connection hanging
// rather than refused: past this the app shows what it has instead of waiting.
const NETWORK_WAIT_MS = 4000;

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // One by one, and never failing the install: the page itself needs a login, and
    // a worker that does not install would leave the app with no notifications.
    await Promise.all(SHELL.map(async (path) => {
      try {
        const response = await fetch(path, { cache: 'no-cache' });
        if (response.ok && !response.redirected) await cache.put(path, response);
      } catch {
        // kept from the next visit instead
      }
    }));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

function withTimeout(promise, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out')), ms);
    promise.then((value) => { clearTimeout(timer); resolve(value); },
      (error) => { clearTimeout(timer); reject(error); });
  });
}

async function fromNetwork(request, cacheKey) {
  const cache = await caches.open(CACHE);
  try {
    const response = await withTimeout(fetch(request), NETWORK_WAIT_MS);
    // The page only when it is the page (a login redirect is not an app shell).
    if (cacheKey && response.ok && !response.redirected) await cache.put(cacheKey, response.clone());
    return response;
  } catch (error) {
    const cached = cacheKey ? await cache.match(cacheKey) : undefined;
    if (cached) return cached;
    if (request.mode === 'navigate') {
      const offline = await cache.match('/ui/offline.html');
      if (offline) return offline;
    }
    throw error;
  }
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (request.mode === 'navigate' && url.pathname === '/') {
    event.respondWith(fromNetwork(request, '/'));
  } else if (request.mode === 'navigate') {
    event.respondWith(fromNetwork(request, null));
  } else if (SHELL.includes(url.pathname) && url.pathname !== '/') {
    event.respondWith(fromNetwork(request, url.pathname));
  }
  // Everything else (WHEP, the event socket, the API, clips) goes to the camera as is.
});

// -- push --------------------------------------------------------------------------

self.addEventListener('push', (event) => {
  let message;
  try {
    message = event.data ? event.data.json() : null;
  } catch {
    message = null;
  }
  // Every push must show something (browsers require it), even one we cannot read.
  message ??= { kind: 'unknown', tag: 'peercam', title: 'peercam', body: 'Something happened at the door', url: '/' };
  event.waitUntil(show(message));
});

async function show(message) {
  const options = {
    body: message.body || '',
    tag: message.tag || 'peercam',
    icon: '/ui/icon-192.png',
    badge: '/ui/badge-96.png',
    data: { kind: message.kind, url: message.url || '/', ring: message.ring ?? null },
    timestamp: message.at ? Math.round(message.at * 1000) : Date.now(),
    renotify: Boolean(message.renotify),
    requireInteraction: Boolean(message.requireInteraction),
    silent: Boolean(message.silent),
    actions: (message.actions || []).slice(0, 2),
  };
  if (message.kind === 'ring') options.vibrate = [300, 150, 300, 150, 300];
  if (message.image) options.image = new URL(message.image, self.location.origin).href;
  if (message.kind === 'ring-over') {
    // The ring's notification is replaced (same tag): answered and declined quietly.
    for (const old of await self.registration.getNotifications({ tag: options.tag })) old.close();
  }
  await self.registration.showNotification(message.title || 'peercam', options);
}

// The push service renewed this device's subscription (or dropped it): the camera is
// told of the new one, under the login this browser holds, and forgets the old one.
self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil((async () => {
    const post = (path, body) => fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    }).catch(() => {});
    const options = event.oldSubscription?.options;
    let renewed = event.newSubscription ?? null;
    if (!renewed && options) {
      renewed = await self.registration.pushManager.subscribe(options).catch(() => null);
    }
    if (event.oldSubscription) await post('/api/push/unsubscribe', { endpoint: event.oldSubscription.endpoint });
    if (renewed) await post('/api/push/subscribe', { ...renewed.toJSON(), device: 'renewed by the app' });
  })());
});

self.addEventListener('notificationclick', (event) => {
  const notification = event.notification;
  const data = notification.data || {};
  notification.close();
  if (event.action === 'decline') {
    event.waitUntil(decline(data));
    return;
  }
  // A tap on a ring, or Answer: straight into the call.
  const url = data.kind === 'ring' ? `/?answer=${encodeURIComponent(data.ring ?? '')}` : data.url || '/';
  event.waitUntil(openPage(url, data));
});

async function decline(data) {
  try {
    const response = await fetch('/api/push/decline', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ring: data.ring }),
    });
    if (response.ok) return;
  } catch {
    // the camera is out of reach: the page says so
  }
  await openPage('/', data);
}

async function openPage(url, data) {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const open = windows.find((client) => new URL(client.url).origin === self.location.origin);
  if (open) {
    // The open page already has its live session: it answers without reloading.
    open.postMessage({ type: 'peercam-notification', kind: data.kind, ring: data.ring, url });
    await open.focus();
    return;
  }
  await self.clients.openWindow(url);
}
