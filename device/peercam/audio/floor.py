"""Who may talk: one viewer at a time holds the floor of the speaker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Floor:
    holder: str | None = None  # the holding viewer's session id
    holder_label: str = ""  # how other viewers are told who it is
    # The holder gives way to whoever answers the door (an NVR talking through its
    # back-channel must not keep the household from answering a ring).
    holder_yields: bool = False

    def request(self, session_id: str, label: str, yields: bool = False) -> bool:
        if self.holder not in (None, session_id):
            return False
        self.holder, self.holder_label, self.holder_yields = session_id, label, yields
        return True

    def release(self, session_id: str) -> bool:
        if self.holder != session_id:
            return False
        self.holder, self.holder_label, self.holder_yields = None, "", False
        return True
