"""The identity a request acts as, and what each role may do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "admin")
# How the request proved it: a login cookie is ambient (a browser sends it on its own),
# so only cookie requests need the cross-origin check.
Proof = Literal["cookie", "bearer", "basic"]


@dataclass(frozen=True)
class Principal:
    name: str  # user name, or "token:<name>"
    role: Role
    proof: Proof

    def may(self, needed: Role) -> bool:
        return needed == "viewer" or self.role == "admin"
