"""The one error the remote trust layer raises for anything it will not accept."""

from __future__ import annotations


class Refused(Exception):
    """A message or pairing offer that is not accepted, and why.

    `code` is short and stable (tests and metrics match on it); `reason` is the line
    the caller logs. Input from the network, however malformed, ends here and never
    in another exception: the rendezvous is not trusted, so garbage is expected.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
