"""Who may talk: one viewer at a time holds the floor of the speaker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Floor:
    holder: str | None = None  # the holding viewer's session id
    holder_label: str = ""  # how other viewers are told who it is

    def request(self, session_id: str, label: str) -> bool:
        if self.holder not in (None, session_id):
            return False
        self.holder, self.holder_label = session_id, label
        return True

    def release(self, session_id: str) -> bool:
        if self.holder != session_id:
            return False
        self.holder, self.holder_label = None, ""
        return True
