"""A viewer behind a narrow link, for benchmarks: a network namespace joined to this
one by a veth pair, the link toward the viewer held to a rate by a token bucket.

    this namespace (the servers)  10.72.0.1 pbv0 ──── pbv1 10.72.0.2  pb-view (Chromium)

Unlike the tests' bed (tests/netns.py), the servers stay in this namespace: the
systems the benchmark compares start as they always do, only listening on
`HOST_IP` instead of loopback so that a browser in `pb-view` can reach them too.
The bucket sits on `pbv0`'s egress, so it shapes what the servers send the viewer
and nothing else (the viewer's RTCP and requests go out unshaped, as on a home
downlink).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.netns import add_namespace

NAMESPACE = "pb-view"
HOST_SIDE, VIEW_SIDE = "pbv0", "pbv1"
HOST_IP, VIEW_IP = "10.72.0.1", "10.72.0.2"
# Chromium started inside NAMESPACE; Playwright drives it over its pipe.
CHROMIUM = str(Path(__file__).with_name("chromium-behind-narrow-link"))


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=30)


def why_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "a network namespace and a tc limit need root"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "iproute2 (ip, tc) is needed"
    return None


def _teardown() -> None:
    # Deleting the namespace deletes its end of the pair, and with it the other end.
    _run("ip", "netns", "del", NAMESPACE, check=False)
    _run("ip", "link", "del", HOST_SIDE, check=False)


@contextmanager
def narrow_link() -> Iterator[None]:
    """The namespace and its link, unlimited until `limit` says otherwise."""
    _teardown()
    try:
        add_namespace(NAMESPACE)  # IPv4 only, as the tests' (tests/netns.py says why)
        _run("ip", "link", "add", HOST_SIDE, "type", "veth", "peer", "name", VIEW_SIDE,
             "netns", NAMESPACE)  # fmt: skip
        _run("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_SIDE)
        _run("ip", "link", "set", HOST_SIDE, "up")
        inside = ("ip", "netns", "exec", NAMESPACE)
        _run(*inside, "ip", "addr", "add", f"{VIEW_IP}/30", "dev", VIEW_SIDE)
        _run(*inside, "ip", "link", "set", VIEW_SIDE, "up")
        # Chromium gathers no host candidate without a default route.
        _run(*inside, "ip", "route", "add", "default", "via", HOST_IP)
        yield
    finally:
        _teardown()


def limit(rate: str | None) -> None:
    """What the servers send the viewer carries at most `rate` (a tc rate, "1mbit";
    None: no limit), behind a queue of 300 ms as a home router or mobile link has.
    The same bucket as tests/test_quality_layers.py puts on its router."""
    _run("tc", "qdisc", "del", "dev", HOST_SIDE, "root", check=False)
    if rate is not None:
        _run("tc", "qdisc", "add", "dev", HOST_SIDE, "root", "tbf", "rate", rate,
             "burst", "20kb", "latency", "300ms")  # fmt: skip
