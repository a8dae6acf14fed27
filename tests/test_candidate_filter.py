"""What a remote viewer is told of the camera's addresses (ice/candidate_filter.py)."""

from __future__ import annotations

from peercam.ice.candidate_filter import candidate_types, is_public, public_candidates_only

ANSWER = "\r\n".join(
    [
        "v=0",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 192.168.1.5",
        "a=candidate:1 1 udp 2130706431 192.168.1.5 5000 typ host",
        "a=candidate:2 1 udp 2130706431 fd00::5 5000 typ host",
        "a=candidate:3 1 udp 2130706431 fe80::1 5000 typ host",
        "a=candidate:4 1 udp 2130706431 2a00:1450:4001::1 5002 typ host",
        "a=candidate:5 1 udp 2130706431 8.8.4.4 5003 typ host",
        "a=candidate:6 1 udp 1694498815 100.64.0.2 6000 typ srflx raddr 192.168.1.5 rport 5000",
        "a=candidate:7 1 udp 16777215 203.0.113.10 7000 typ relay raddr 100.64.0.2 rport 6000",
        "a=candidate:8 1 udp 2130706431 0b1e5c1e-8d8e-4a43-a1a5-5c0f1d2e3f40.local 5000 typ host",
        "",
    ]
)


def test_only_public_addresses_are_kept_and_no_lan_address_is_left_anywhere() -> None:
    filtered = public_candidates_only(ANSWER)
    assert candidate_types(filtered) == ["host", "host", "srflx", "relay"]
    # A public host address (a global IPv6, a forwarded public IPv4) stays: a direct
    # path from outside may use it.
    assert "2a00:1450:4001::1 5002 typ host" in filtered and "8.8.4.4 5003 typ host" in filtered
    # The LAN base of the server-reflexive candidate is blanked, as browsers do.
    assert "raddr 0.0.0.0 rport 0" in filtered
    for private in ("192.168.", "fd00::", "fe80::", ".local"):
        assert private not in filtered, private
    assert "c=IN IP6 2a00:1450:4001::1" in filtered


def test_with_no_public_candidate_the_answer_names_no_address() -> None:
    lan_only = "\r\n".join(
        ["v=0", "c=IN IP4 10.0.0.5", "a=candidate:1 1 udp 2130706431 10.0.0.5 5000 typ host", ""]
    )
    filtered = public_candidates_only(lan_only)
    assert candidate_types(filtered) == [] and "c=IN IP4 0.0.0.0" in filtered
    assert "10.0.0.5" not in filtered


def test_public_means_globally_routable() -> None:
    assert is_public("8.8.8.8") and is_public("2a00:1450:4001::1")
    private = ("10.1.2.3", "172.16.0.1", "192.168.0.1", "127.0.0.1", "169.254.1.1",
               "100.64.0.1", "fd12::1", "fe80::1", "::1", "host.local", "garbage")  # fmt: skip
    for address in private:
        assert not is_public(address), address
