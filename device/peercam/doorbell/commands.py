"""The page's doorbell commands, one table for every way a page sends them (the
WebSocket at /events, the data channel of its peer connection).

Every command needs the admin role: a viewer only watches. The caller has already
tied the command to the viewer session it acts through; the role and that session
are all that is checked here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from peercam.audio.talkback import Outcome
from peercam.auth.principal import Role
from peercam.doorbell.call import Doorbell
from peercam.events import CommandResult

logger = logging.getLogger(__name__)

Command = Callable[[str, str], Awaitable[Outcome]]


class DoorbellCommands:
    def __init__(self, doorbell: Doorbell) -> None:
        self._commands: dict[str, Command] = {
            "answer": doorbell.answer,
            "decline": doorbell.decline,
            "hangup": doorbell.hang_up,
            "talk": lambda sid, label: doorbell.talk(sid, label, True),
            "untalk": lambda sid, label: doorbell.talk(sid, label, False),
            "open-door": doorbell.open_door,
        }

    def refusal(self, name: object, user: str, role: Role) -> CommandResult | None:
        """Why `user` may not run `name` at all, or None."""
        if not isinstance(name, str) or name not in self._commands:
            known = ", ".join(self._commands)
            return CommandResult(name, False, f"unknown command {name!r}; known: {known}")
        if role != "admin":
            return CommandResult(name, False, f"{name} needs the admin role; {user} may only watch")
        return None

    async def run(
        self, name: object, user: str, role: Role, session_id: str, client: str
    ) -> CommandResult:
        """Run `name` for `user` through the viewer session `session_id`; `client` is
        where it came from, for the log."""
        refusal = self.refusal(name, user, role)
        if refusal is not None:
            return refusal
        assert isinstance(name, str)  # refusal() checked it
        # What every page is told (who talks, who answered): the user's name. The
        # address and session are for the owner's log only; a viewer must not learn
        # where an admin is, nor the start of an id that commands the doorbell.
        outcome = await self._commands[name](session_id, user)
        logger.info(
            "%s from %s (session %s from %s): %s",
            name,
            user,
            session_id[:6],
            client or "an unknown address",
            "done" if outcome.ok else outcome.reason,
        )
        return CommandResult(name, outcome.ok, outcome.reason)
