"""ICE server selection and TURN REST credentials (coturn accepting them, and refusing
a wrong secret, is proven in test_turn_fallback.py)."""

from __future__ import annotations

import base64
import re

from peercam.config import IceServer, TurnRestConfig, WebRtcConfig
from peercam.ice.servers import describe_choice, session_ice, turn_rest_credentials


def test_credentials_follow_the_turn_rest_scheme() -> None:
    username, password = turn_rest_credentials("s3cret", "abc", ttl=600, now=1_000_000.5)
    assert username == "1000600:abc"  # expiry, then the session it was minted for
    assert len(base64.b64decode(password)) == 20  # an HMAC-SHA1 digest
    assert turn_rest_credentials("other", "abc", 600, 1_000_000.5)[1] != password


def test_the_daemon_takes_one_stun_and_the_best_turn_the_viewer_gets_all() -> None:
    config = WebRtcConfig(
        ice_servers=[
            IceServer(urls=["stun:a:3478", "stun:b:3478"]),
            IceServer(
                urls=["turns:t:5349", "turn:t:3478?transport=tcp"], username="u", credential="p"
            ),
        ],
        turn_rest=TurnRestConfig(urls=["turn:r:3478?transport=udp"], secret="x", ttl=300),
    )
    ice = session_ice(config, "sess", now=100)
    assert [s.urls[0] for s in ice.for_daemon] == ["stun:a:3478", "turn:r:3478?transport=udp"]
    minted = ice.for_daemon[1]
    assert minted.username == "400:sess" and minted.credential
    assert [u for s in ice.for_viewer for u in s.urls] == [
        "stun:a:3478", "stun:b:3478", "turns:t:5349", "turn:t:3478?transport=tcp",
        "turn:r:3478?transport=udp",
    ]  # fmt: skip
    # Without the UDP one, TCP comes before TLS.
    no_udp = WebRtcConfig(ice_servers=config.ice_servers)
    assert session_ice(no_udp, "s").for_daemon[1].urls == ["turn:t:3478?transport=tcp"]
    assert describe_choice(no_udp) == "daemon uses stun:a:3478, turn:t:3478?transport=tcp"
    assert describe_choice(WebRtcConfig()) == "no STUN/TURN server: host candidates only"


async def test_options_gives_fresh_credentials_and_the_policy(start_daemon) -> None:  # type: ignore[no-untyped-def]

    daemon = start_daemon(
        '[camera]\nsize = "320x240"\n[webrtc]\nice_transport_policy = "relay"\n'
        '[webrtc.turn_rest]\nurls = ["turn:127.0.0.1:3478"]\nsecret = "x"\n'
    )
    async with daemon.access.session() as http:
        async with http.options(daemon.base + "/whep") as response:
            links = response.headers.getall("Link")
            assert response.headers["Peercam-Ice-Transport-Policy"] == "relay"
        async with http.options(daemon.base + "/whep") as again:
            second = again.headers.getall("Link")
    assert len(links) == 1 and re.search(r'username="\d+:[0-9a-f]{16}"', links[0])
    assert links != second  # each page gets credentials of its own


async def test_host_candidates_only_on_the_configured_interfaces(start_daemon) -> None:  # type: ignore[no-untyped-def]
    import ifaddr

    from tests.whep_viewer import WhepViewer

    def has_ipv4(adapter: ifaddr.Adapter) -> bool:
        return any(isinstance(ip.ip, str) and ip.ip != "127.0.0.1" for ip in adapter.ips)

    real = next(a.nice_name for a in ifaddr.get_adapters() if has_ipv4(a))
    only_real = start_daemon(f'[camera]\nsize = "320x240"\n[webrtc]\ninterfaces = ["{real}"]\n')
    async with WhepViewer(only_real.access) as viewer:
        assert viewer.answer is not None and " typ host" in viewer.answer.sdp
        await viewer.video_frames(5)
    nowhere = start_daemon('[camera]\nsize = "320x240"\n[webrtc]\ninterfaces = ["nosuch0"]\n')
    async with WhepViewer(nowhere.access) as viewer:
        assert viewer.answer is not None and " typ host" not in viewer.answer.sdp
    assert "have no usable address" in nowhere.log()


async def test_fixed_ports_and_the_public_address_in_the_answer(start_daemon) -> None:  # type: ignore[no-untyped-def]
    from tests.whep_viewer import WhepViewer

    # A loopback "public" address: the candidates may be tried, and reach nothing outside.
    daemon = start_daemon(
        '[camera]\nsize = "320x240"\n[webrtc]\nudp_ports = "41000-41010"\npublic_ip = "127.0.0.2"\n'
    )
    async with WhepViewer(daemon.access) as viewer:
        assert viewer.answer is not None
        hosts = re.findall(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", viewer.answer.sdp)
        ports = {int(port) for _, port in hosts}
        assert ports and all(41000 <= port <= 41010 for port in ports), hosts
        assert {port for ip, port in hosts if ip == "127.0.0.2"} == {
            port for ip, port in hosts if ip != "127.0.0.2"
        }
        await viewer.video_frames(10)
