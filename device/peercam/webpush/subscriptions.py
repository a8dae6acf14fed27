"""Who gets pushes: each browser's subscription, under the user and login that made
it, and each user's choices. One private file in the state directory, replaced whole.

A subscription ends when the push service says it is gone (404/410), when the login
that made it logs out, and when its user's password changes or the user is removed
(`password_mark` no longer matches: also across restarts, when the command line
changed the password while the daemon was down).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peercam.service.private_file import write_private

logger = logging.getLogger(__name__)

FILE_NAME = "webpush-subscriptions.json"
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def password_mark(password_hash: str) -> str:
    """Says which password a subscription was made under without copying the hash."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str
    user: str
    session: str | None  # the login that made it (login_sessions.session_key)
    password_mark: str
    device: str  # what the browser said it is, for the settings page
    created: float

    def info(self) -> dict[str, Any]:
        """As pywebpush takes it (the browser's PushSubscription.toJSON())."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass(frozen=True)
class Preferences:
    motion: bool
    clips: bool
    # Local "HH:MM"; both set: motion and clips stay quiet from start to end (rings
    # always come: someone is at the door).
    quiet_start: str | None = None
    quiet_end: str | None = None

    def quiet_at(self, hour: int, minute: int) -> bool:
        if not self.quiet_start or not self.quiet_end:
            return False
        now = hour * 60 + minute
        start, end = _minutes(self.quiet_start), _minutes(self.quiet_end)
        if start <= end:
            return start <= now < end
        return now >= start or now < end  # over midnight

    def wants(self, kind: str, hour: int, minute: int) -> bool:
        if kind in ("ring", "ring-over", "test"):
            return True
        chosen = {"motion": self.motion, "clip": self.clips}.get(kind, False)
        return chosen and not self.quiet_at(hour, minute)


def valid_clock(value: object) -> bool:
    return value is None or (isinstance(value, str) and _CLOCK.match(value) is not None)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class SubscriptionStore:
    def __init__(self, directory: Path, defaults: Preferences, limit: int) -> None:
        self.path = directory / FILE_NAME
        self._defaults = defaults
        self._limit = limit
        self.subscriptions: dict[str, Subscription] = {}  # by endpoint
        self._preferences: dict[str, Preferences] = {}

    def load(self) -> None:
        """Blocking: call it off the event loop."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            subscriptions = [Subscription(**s) for s in data.get("subscriptions", [])]
            preferences = {u: Preferences(**p) for u, p in data.get("preferences", {}).items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as error:
            # Devices subscribe again the next time their page opens.
            logger.warning("ignoring unreadable %s (%s)", self.path, error)
            return
        self.subscriptions = {s.endpoint: s for s in subscriptions}
        self._preferences = preferences

    def content(self) -> bytes:
        """What `save` writes, taken on the event loop so a save sees one state."""
        data = {
            "version": 1,
            "subscriptions": [dataclasses.asdict(s) for s in self.subscriptions.values()],
            "preferences": {u: dataclasses.asdict(p) for u, p in self._preferences.items()},
        }
        return json.dumps(data, indent=1).encode()

    def save(self, content: bytes) -> None:
        """Blocking (fsync): call it off the event loop."""
        write_private(self.path, content)

    def add(self, subscription: Subscription) -> None:
        self.subscriptions.pop(subscription.endpoint, None)
        while len(self.subscriptions) >= self._limit:  # the oldest goes
            oldest = min(self.subscriptions.values(), key=lambda s: s.created)
            del self.subscriptions[oldest.endpoint]
        self.subscriptions[subscription.endpoint] = subscription

    def remove(self, endpoint: str) -> Subscription | None:
        return self.subscriptions.pop(endpoint, None)

    def remove_where(self, doomed: list[Subscription]) -> int:
        for subscription in doomed:
            self.subscriptions.pop(subscription.endpoint, None)
        return len(doomed)

    def of_user(self, user: str) -> list[Subscription]:
        return [s for s in self.subscriptions.values() if s.user == user]

    def preferences(self, user: str) -> Preferences:
        return self._preferences.get(user, self._defaults)

    def set_preferences(self, user: str, preferences: Preferences) -> None:
        self._preferences[user] = preferences

    def forget_user(self, user: str) -> None:
        self._preferences.pop(user, None)


def new_subscription(
    endpoint: str, p256dh: str, auth: str, user: str, session: str | None, mark: str, device: str
) -> Subscription:
    return Subscription(endpoint, p256dh, auth, user, session, mark, device[:80], time.time())
