"""The address to tell people: what a browser or phone on the LAN can open."""

from __future__ import annotations

_ANY = ("0.0.0.0", "::", "")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def lan_address() -> str:
    """The machine's first IPv4 address that is not loopback ("localhost" if none)."""
    from aioice.ice import get_host_addresses

    addresses = get_host_addresses(use_ipv4=True, use_ipv6=False)
    return addresses[0] if addresses else "localhost"


def display_url(scheme: str, host: str, port: int) -> str:
    """The URL of a server listening on `host`: a listening-on-all address becomes
    one a browser can open."""
    if host in _ANY:
        host = lan_address()
    return f"{scheme}://{host}:{port}/"


def url_for_phone(scheme: str, host: str, port: int | None) -> str:
    """The URL a phone on the LAN opens for a page the browser reached as `host`:
    the same, unless that was this machine's own loopback name."""
    if host.strip("[]") in _LOOPBACK or host in _ANY:
        host = lan_address()
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}{'' if port is None else f':{port}'}/"
