"""The Web Push output: pushes doorbell events to every subscribed browser, and
serves the page's push API, its service worker and its web app manifest.

Events are turned into messages by one task and handed out by another, from a
bounded queue (the oldest waiting message goes when it is full), to one lane per
device: a slow or unreachable push service delays only its own devices' later pushes,
never another device, the event bus, a page or the pipeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from asyncio import Task
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import Counter, Histogram
from py_vapid import Vapid02
from pywebpush import WebPusher, WebPushException

from peercam.auth.authenticator import AccountChange
from peercam.auth.login_sessions import COOKIE, session_key
from peercam.config import WebPushConfig
from peercam.events import (
    Answered,
    ClipSaved,
    Declined,
    Event,
    Missed,
    Motion,
    Ring,
)
from peercam.http.access import principal_of
from peercam.http.errors import refuse
from peercam.outputs.output import Output, OutputContext
from peercam.recording.live_snapshot import NoPicture, current_jpeg
from peercam.service.state_dir import state_directory
from peercam.webpush import messages
from peercam.webpush.messages import Message
from peercam.webpush.sender import Outcome, PushSender, endpoint_allowed
from peercam.webpush.subscriptions import (
    Preferences,
    Subscription,
    SubscriptionStore,
    new_subscription,
    password_mark,
    valid_clock,
)
from peercam.webpush.vapid_key import application_server_key, load_or_make

logger = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "/push/ring/"
_SNAPSHOT_KEEP = 600.0  # seconds a ring's picture stays fetchable (a phone away, then back)
# Rings' pictures kept at most: a visitor pressing the button over and over, or
# many rings in ten minutes, must not fill the memory with JPEGs.
_SNAPSHOTS_KEPT = 8
_SNAPSHOT_WAIT = 8.0
_MAX_BODY = 8192


@dataclass
class _RingPicture:
    picture: asyncio.Task[bytes | None]
    expires: float


@dataclass
class _Current:
    """The ring going on, so that its end updates its notifications."""

    ring_id: str | None = None
    picture_link: str | None = None  # the ring's one picture, for each press of it
    pictures: dict[str, _RingPicture] = field(default_factory=dict)


def _asset(name: str) -> bytes:
    return resources.files("peercam.webroot").joinpath(name).read_bytes()


class WebPush:
    def __init__(self, context: OutputContext) -> None:
        self._context = context
        self._settings: WebPushConfig = context.config.webpush
        self._ring_timeout = context.config.doorbell.ring_timeout
        self._directory = state_directory(context.config.server.state_dir)
        defaults = Preferences(self._settings.motion_default, self._settings.clips_default)
        self._store = SubscriptionStore(self._directory, defaults, self._settings.max_subscriptions)
        self._key: Vapid02 | None = None
        self._public_key = ""
        self._sender: PushSender | None = None
        self._accounts = context.accounts
        self._events: asyncio.Queue[Event] | None = None
        self._outbox: asyncio.Queue[Message] = asyncio.Queue(self._settings.queue)
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: set[Task[Outcome]] = set()
        self._lanes: dict[str, asyncio.Lock] = {}  # by endpoint
        self._waiting: dict[str, int] = {}  # sends made and not finished, by endpoint
        self._saving: asyncio.Task[None] | None = None
        self._save_again = False
        self._current = _Current()
        self._service_worker = _asset("sw.js")
        self._manifest = _asset("manifest.webmanifest")
        registry = context.metrics.registry
        self._sent = Counter(
            "peercam_webpush_requests",
            "Push requests by message kind and what the push service answered",
            ["kind", "result"],
            registry=registry,
        )
        self._dropped = Counter(
            "peercam_webpush_dropped",
            "Push messages dropped because the queue was full",
            registry=registry,
        )
        self._latency = Histogram(
            "peercam_webpush_event_to_answer_seconds",
            "From the event to the push service's answer",
            ["kind"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )

    @property
    def name(self) -> str:
        return "web push"

    # -- life ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._accounts is not None:
            self._accounts.listeners.append(self.account_changed)
        if not self._settings.enabled:
            return
        self._key = await asyncio.to_thread(load_or_make, self._directory)
        self._public_key = application_server_key(self._key)
        await asyncio.to_thread(self._store.load)
        self._sender = PushSender(self._key, self._settings.contact, self._settings.timeout)
        await self._sender.start()
        self._events = self._context.events.subscribe()
        self._tasks = [
            asyncio.create_task(self._listen(self._events), name="webpush-listen"),
            asyncio.create_task(self._deliver(), name="webpush-deliver"),
        ]
        self._prune_invalid()

    async def stop(self) -> None:
        if self._accounts is not None and self.account_changed in self._accounts.listeners:
            self._accounts.listeners.remove(self.account_changed)
        if self._events is not None:
            self._context.events.unsubscribe(self._events)
            self._events = None
        pictures = [p.picture for p in self._current.pictures.values()]
        running = [*self._tasks, *self._sending, *pictures]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._tasks = []
        self._current = _Current()
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
        if self._sender is not None:
            await self._sender.close()
            self._sender = None

    # -- subscriptions -------------------------------------------------------------

    def _save_soon(self) -> None:
        """Writes off the event loop, one at a time; changes made meanwhile are
        written by one more save after it."""
        if self._saving is not None and not self._saving.done():
            self._save_again = True
            return
        self._saving = asyncio.get_running_loop().create_task(self._save(), name="webpush-save")

    async def _save(self) -> None:
        while True:
            self._save_again = False
            try:
                await asyncio.to_thread(self._store.save, self._store.content())
            except OSError as error:
                logger.warning("cannot keep push subscriptions in %s: %s", self._store.path, error)
            if not self._save_again:
                return

    def account_changed(self, change: AccountChange) -> None:
        """Called by the authenticator: a logout, a new password, a removed user."""
        if change.session is not None:
            doomed = [s for s in self._store.of_user(change.user) if s.session == change.session]
            why = "logged out"
        else:
            doomed = self._store.of_user(change.user)
            why = "password changed or user removed"
            if self._accounts is not None and self._accounts.password_hash(change.user) is None:
                self._store.forget_user(change.user)
        if doomed:
            self._store.remove_where(doomed)
            logger.info("%d push subscription(s) of %s ended: %s", len(doomed), change.user, why)
        if doomed or change.session is None:
            self._save_soon()

    def _valid(self, subscription: Subscription) -> bool:
        if self._accounts is None:
            return True
        current = self._accounts.password_hash(subscription.user)
        return current is not None and password_mark(current) == subscription.password_mark

    def _prune_invalid(self) -> None:
        doomed = [s for s in self._store.subscriptions.values() if not self._valid(s)]
        if doomed:
            self._store.remove_where(doomed)
            logger.info("%d push subscription(s) ended: password changed or user removed",
                        len(doomed))  # fmt: skip
            self._save_soon()

    def _is_admin(self, user: str) -> bool:
        if self._accounts is None:
            return False
        found = self._accounts.store.users.get(user)
        return found is not None and found.role == "admin"

    # -- events to messages --------------------------------------------------------

    async def _listen(self, queue: asyncio.Queue[Event]) -> None:
        while True:
            event = await queue.get()
            message = self._message_for(event)
            if message is None:
                continue
            if self._outbox.full():
                self._outbox.get_nowait()
                self._dropped.inc()
            self._outbox.put_nowait(message)

    def _message_for(self, event: Event) -> Message | None:
        current = self._current
        if isinstance(event, Ring):
            if event.call == "in-call":
                return None  # someone is already at the door with them
            if current.ring_id is None:
                current.ring_id = secrets.token_urlsafe(12)
                current.picture_link = None
            # A picture costs a keyframe and a decode: only when someone gets it, and
            # one per ring however often the button is pressed while it rings.
            if current.picture_link is None and self._store.subscriptions:
                current.picture_link = self._take_picture()
            return messages.ring(event, current.ring_id, current.picture_link, self._ring_timeout)
        if isinstance(event, Answered | Declined | Missed):
            ring_id, current.ring_id = current.ring_id, None
            return messages.ring_over(event, ring_id)
        if isinstance(event, Motion):
            return messages.motion(event)
        if isinstance(event, ClipSaved):
            return messages.clip(event)
        return None

    def _take_picture(self) -> str:
        """Starts the ring's snapshot and returns where the phone fetches it: the push
        goes out at once, the picture is ready by the time the phone asks."""
        now = time.monotonic()
        pictures = self._current.pictures
        for token in [t for t, p in pictures.items() if p.expires < now]:
            pictures.pop(token).picture.cancel()
        while len(pictures) >= _SNAPSHOTS_KEPT:  # the oldest first: dicts keep order
            pictures.pop(next(iter(pictures))).picture.cancel()
        token = secrets.token_urlsafe(16)
        task = asyncio.create_task(self._snapshot(), name="webpush-snapshot")
        pictures[token] = _RingPicture(task, now + _SNAPSHOT_KEEP)
        return SNAPSHOT_PREFIX + token

    async def _snapshot(self) -> bytes | None:
        try:
            return await current_jpeg(self._context.pipeline, None)
        except NoPicture as error:
            logger.warning("no picture for the ring notification: %s", error)
            return None

    # -- delivery ------------------------------------------------------------------

    async def _deliver(self) -> None:
        while True:
            message = await self._outbox.get()
            try:
                self._dispatch(message, self._recipients(message.kind))
            except Exception:
                logger.exception("sending the %s push failed", message.kind)

    def _recipients(self, kind: str) -> list[Subscription]:
        if self._accounts is not None:
            self._accounts.refresh()  # a password changed on the command line counts now
        self._prune_invalid()
        local = time.localtime()
        return [
            s
            for s in self._store.subscriptions.values()
            if self._store.preferences(s.user).wants(kind, local.tm_hour, local.tm_min)
        ]

    def _dispatch(self, message: Message, recipients: list[Subscription]) -> list[Task[Outcome]]:
        """One send per device, each in its device's lane: a device's messages arrive
        in order (the ring before its "answered"), and a push service that hangs holds
        up only its own devices, each request for at most webpush.timeout."""
        sends: list[Task[Outcome]] = []
        for subscription in recipients:
            endpoint = subscription.endpoint
            if self._waiting.get(endpoint, 0) >= self._settings.queue:
                self._dropped.inc()
                continue
            self._waiting[endpoint] = self._waiting.get(endpoint, 0) + 1
            send = asyncio.create_task(
                self._send_in_lane(subscription, message), name="webpush-send"
            )
            self._sending.add(send)
            send.add_done_callback(self._sending.discard)
            sends.append(send)
        return sends

    async def _send_in_lane(self, subscription: Subscription, message: Message) -> Outcome:
        endpoint = subscription.endpoint
        # asyncio's lock is first come, first served, and tasks start in the order
        # they were made: the lane keeps the order messages were dispatched in.
        lane = self._lanes.setdefault(endpoint, asyncio.Lock())
        try:
            async with lane:
                sender = self._sender
                if sender is None:
                    return Outcome(None, "stopped")
                outcome = await sender.send(
                    subscription,
                    message.for_user(self._is_admin(subscription.user)),
                    message.ttl,
                    message.urgency,
                    message.topic,
                )
        finally:
            self._waiting[endpoint] -= 1
            if not self._waiting[endpoint]:
                del self._waiting[endpoint]
                del self._lanes[endpoint]
        self._record(subscription, message, outcome)
        return outcome

    def _record(self, subscription: Subscription, message: Message, outcome: Outcome) -> None:
        self._latency.labels(message.kind).observe(time.monotonic() - message.created)
        result = str(outcome.status) if outcome.status is not None else "no-answer"
        self._sent.labels(message.kind, result).inc()
        if outcome.gone:
            # A subscription made again meanwhile is a new one: keep it.
            if self._store.subscriptions.get(subscription.endpoint) == subscription:
                self._store.remove(subscription.endpoint)
                logger.info(
                    "push subscription of %s's %s is gone at the push service",
                    subscription.user,
                    subscription.device or "device",
                )
                self._save_soon()
        elif not outcome.ok:
            logger.warning(
                "push to %s's %s: %s %s",
                subscription.user,
                subscription.device or "device",
                outcome.status or "",
                outcome.reason,
            )

    # -- HTTP ----------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/sw.js", self.service_worker),
            web.get("/manifest.webmanifest", self.manifest),
            web.get(SNAPSHOT_PREFIX + "{token}", self.ring_picture),
            web.get("/api/push", self.status),
            web.post("/api/push/subscribe", self.subscribe),
            web.post("/api/push/unsubscribe", self.unsubscribe),
            web.put("/api/push/preferences", self.set_preferences),
            web.post("/api/push/test", self.test),
            web.post("/api/push/decline", self.decline),
        ]

    async def service_worker(self, request: web.Request) -> web.Response:
        # Browsers check for a new worker on navigation; no-cache makes that check
        # reach the daemon, so an update of peercam reaches installed apps.
        return web.Response(
            body=self._service_worker,
            content_type="text/javascript",
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def manifest(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._manifest,
            content_type="application/manifest+json",
            headers={"Cache-Control": "no-cache"},
        )

    async def ring_picture(self, request: web.Request) -> web.Response:
        """Public, but only under an unguessable name that travels nowhere but inside
        the encrypted push message, and only for a few minutes."""
        found = self._current.pictures.get(request.match_info["token"])
        if found is None or found.expires < time.monotonic():
            raise web.HTTPNotFound()
        picture = None
        if not found.picture.cancelled():
            try:
                picture = await asyncio.wait_for(asyncio.shield(found.picture), _SNAPSHOT_WAIT)
            except TimeoutError:
                pass
        if picture is None:
            return refuse(503, "no picture of this ring")
        return web.Response(
            body=picture,
            content_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=600"},
        )

    async def _json(self, request: web.Request) -> dict[str, Any] | None:
        if request.content_length is not None and request.content_length > _MAX_BODY:
            return None
        body = await request.content.read(_MAX_BODY + 1)
        if len(body) > _MAX_BODY:
            return None
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _user(self, request: web.Request) -> str:
        principal = principal_of(request)
        if principal is None:  # the access middleware lets no one here without one
            raise web.HTTPUnauthorized()
        return principal.name

    async def status(self, request: web.Request) -> web.Response:
        user = self._user(request)
        preferences = self._store.preferences(user)
        return web.json_response(
            {
                "enabled": self._settings.enabled,
                "key": self._public_key,
                "endpoints": [s.endpoint for s in self._store.of_user(user)],
                "preferences": {
                    "motion": preferences.motion,
                    "clips": preferences.clips,
                    "quiet_start": preferences.quiet_start,
                    "quiet_end": preferences.quiet_end,
                },
            }
        )

    async def subscribe(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        cookie = request.cookies.get(COOKIE)
        if principal is None or principal.proof != "cookie" or not cookie:
            return refuse(403, "push subscriptions are for a logged-in browser")
        if not self._settings.enabled or self._accounts is None:
            return refuse(503, "web push is off on this camera")
        data = await self._json(request)
        keys = data.get("keys") if data else None
        endpoint = data.get("endpoint") if data else None
        if (
            data is None
            or not isinstance(endpoint, str)
            or not isinstance(keys, dict)
            or not all(isinstance(keys.get(k), str) and keys[k] for k in ("p256dh", "auth"))
            or len(endpoint) > 2048
        ):
            return refuse(400, "send the browser's PushSubscription as JSON")
        if not endpoint_allowed(
            endpoint, self._settings.endpoint_hosts, self._settings.allow_http_endpoints
        ):
            return refuse(403, "that push service is not among webpush.endpoint_hosts")
        hashed = self._accounts.password_hash(principal.name)
        if hashed is None:
            return refuse(403, "only a user with a password gets pushes")
        device = data.get("device")
        subscription = new_subscription(
            endpoint,
            keys["p256dh"],
            keys["auth"],
            principal.name,
            session_key(cookie),
            password_mark(hashed),
            device if isinstance(device, str) else "",
        )
        try:
            # pywebpush's own check of the keys, before anything is kept.
            await asyncio.to_thread(_check_keys, subscription)
        except ValueError as error:
            return refuse(400, f"bad subscription keys: {error}")
        self._store.add(subscription)
        self._save_soon()
        logger.info("push subscription for %s (%s)", principal.name, subscription.device or "?")
        return web.json_response({"subscribed": True}, status=201)

    async def unsubscribe(self, request: web.Request) -> web.Response:
        user = self._user(request)
        data = await self._json(request)
        endpoint = data.get("endpoint") if data else None
        found = self._store.subscriptions.get(endpoint) if isinstance(endpoint, str) else None
        if found is not None and found.user == user:
            self._store.remove(found.endpoint)
            self._save_soon()
        return web.json_response({"subscribed": False})

    async def set_preferences(self, request: web.Request) -> web.Response:
        user = self._user(request)
        data = await self._json(request)
        if data is None:
            return refuse(400, "send preferences as JSON")
        current = self._store.preferences(user)
        motion, clips = data.get("motion", current.motion), data.get("clips", current.clips)
        start = data.get("quiet_start", current.quiet_start) or None
        end = data.get("quiet_end", current.quiet_end) or None
        if not isinstance(motion, bool) or not isinstance(clips, bool):
            return refuse(400, "motion and clips are true or false")
        if not valid_clock(start) or not valid_clock(end):
            return refuse(400, 'quiet hours are "HH:MM" (24 h), or empty')
        self._store.set_preferences(user, Preferences(motion, clips, start, end))
        self._save_soon()
        return await self.status(request)

    async def test(self, request: web.Request) -> web.Response:
        """Sends at once (not through the queue) and says what the push service said."""
        user = self._user(request)
        data = await self._json(request) or {}
        endpoint = data.get("endpoint")
        mine = [s for s in self._store.of_user(user) if endpoint is None or s.endpoint == endpoint]
        if not mine:
            return refuse(404, "this device has no push subscription here: turn notifications on")
        outcomes = await asyncio.gather(*self._dispatch(messages.test(user), mine))
        return web.json_response(
            {
                "sent": sum(o.ok for o in outcomes),
                "failed": [o.reason or str(o.status) for o in outcomes if not o.ok],
            }
        )

    async def decline(self, request: web.Request) -> web.Response:
        """The notification's Decline: there is no page and no viewer session, so it
        is a request of its own; admins only (the access table), and only for the
        ring the notification was about."""
        user = self._user(request)
        data = await self._json(request) or {}
        doorbell = self._context.doorbell
        if doorbell is None:
            return refuse(503, "no doorbell")
        if data.get("ring") != self._current.ring_id or self._current.ring_id is None:
            return refuse(409, "that ring is over")
        outcome = await doorbell.decline("push", user)
        if not outcome.ok:
            return refuse(409, outcome.reason)
        logger.info("decline from %s's notification", user)
        return web.json_response({"ok": True})


def _check_keys(subscription: Subscription) -> None:
    try:
        pusher = WebPusher(subscription.info())
    except (WebPushException, ValueError) as error:
        raise ValueError(str(error)) from None
    if pusher.receiver_key is None or len(pusher.receiver_key) != 65 or not pusher.auth_key:
        raise ValueError("p256dh must be an uncompressed P-256 point and auth a secret")


def build(context: OutputContext) -> list[Output]:
    """Built wherever there is a doorbell to push: also with `enabled = false`, which
    only stops pushes (the app stays installable)."""
    if context.doorbell is None:
        return []
    return [WebPush(context)]
