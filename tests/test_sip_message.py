"""SIP message parsing and writing (device/peercam/sip/message.py) and digest
answers (sip/digest.py): what a registrar, a phone or a hostile peer may send."""

from __future__ import annotations

import pytest

from peercam.sip import digest
from peercam.sip.message import (
    Address,
    CSeq,
    Request,
    Response,
    SipError,
    StreamFramer,
    Via,
    parse,
)

INVITE = (
    b"INVITE sip:door@192.0.2.10 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK776asdhds, SIP/2.0/TCP [2001:db8::9]"
    b";branch=z9hG4bKnashds8;received=192.0.2.99\r\n"
    b"Via: SIP/2.0/UDP proxy.example.org;branch=z9hG4bK77ef4c2312983.1\r\n"
    b"Max-Forwards: 70\r\n"
    b'f: "Hall, DECT \\"2\\"" <sip:hall@example.org>;tag=1928301774\r\n'
    b"t: <sip:door@example.org>\r\n"
    b"i: a84b4c76e66710@pc33.example.org\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Subject: who is\r\n"
    b"  at the door\r\n"
    b"m: <sip:hall@192.0.2.20:5060;transport=udp>\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\r\nthe rest of a datagram is not the body"
)


def test_a_request_with_compact_folded_and_listed_headers() -> None:
    message = parse(INVITE)
    assert isinstance(message, Request)
    assert (message.method, message.uri) == ("INVITE", "sip:door@192.0.2.10")
    vias = [Via.parse(v) for v in message.headers.get_all("Via")]
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("UDP", "192.0.2.20", 5060, "z9hG4bK776asdhds"),
        ("TCP", "2001:db8::9", None, "z9hG4bKnashds8"),
        ("UDP", "proxy.example.org", None, "z9hG4bK77ef4c2312983.1"),
    ]
    assert dict(vias[1].params)["received"] == "192.0.2.99"
    caller = Address.parse(message.headers.require("From"))
    assert (caller.display, caller.uri, caller.tag) == (
        'Hall, DECT "2"', "sip:hall@example.org", "1928301774",
    )  # fmt: skip
    assert Address.parse(message.headers.require("To")).tag is None
    assert message.headers.get("call-id") == "a84b4c76e66710@pc33.example.org"
    assert CSeq.parse(message.headers.require("CSeq")) == CSeq(314159, "INVITE")
    assert message.headers.get("Subject") == "who is at the door"
    contact = Address.parse(message.headers.get_all("Contact")[0])
    assert contact.uri == "sip:hall@192.0.2.20:5060;transport=udp"  # URI params kept
    assert message.body == b"v=0\r"  # cut to Content-Length on a datagram


def test_what_is_written_reads_back_the_same() -> None:
    request = parse(INVITE)
    assert isinstance(request, Request)
    again = parse(request.to_bytes(), stream=True)
    assert isinstance(again, Request)
    assert list(again.headers) == list(request.headers)  # names written out in full
    assert again.body == request.body
    assert b"\r\nCall-ID: a84b4c76e66710@pc33.example.org\r\n" in request.to_bytes()
    ok = Response(200, "OK", request.headers.copy(), b"")
    ok.headers.set("To", str(Address.parse(ok.headers.require("To")).with_param("tag", "x1")))
    back = parse(ok.to_bytes())
    assert isinstance(back, Response) and (back.status, back.reason) == (200, "OK")
    assert Address.parse(back.headers.require("To")).tag == "x1"
    assert back.headers.get("Content-Length") == "0"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n", "no blank line"),
        (b"INVITE sip:a@b\r\n\r\n", "start line"),
        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", "version"),
        (b"SIP/2.0 20 OK\r\n\r\n", "status"),
        (b"SIP/2.0 999 Nine\r\n\r\n", "status"),
        (b"INV<TE sip:a@b SIP/2.0\r\n\r\n", "request line"),
        (b"INVITE sip:a@b SIP/2.0\r\nno colon here\r\n\r\n", "not a header line"),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort", "Content-Length 10"),
        (b"INVITE sip:a@b SIP/2.0\r\nFrom: \xff\xfe\r\n\r\n", "UTF-8"),
        (b"SIP/2.0 1\xc2\xb20 OK\r\n\r\n", "status"),  # "1²0"
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: \xc2\xb2\r\n\r\n", "Content-Length"),
        (b"INVITE sip:a@b SIP/2.0\r\nl: 99999999999\r\n\r\n", "Content-Length"),
        (b"INVITE sip:a@b SIP/2.0\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n", "bytes"),
    ],
)
def test_malformed_messages_are_a_sip_error(data: bytes, why: str) -> None:
    with pytest.raises(SipError, match=why):
        parse(data)


def test_a_stream_is_cut_into_messages_by_content_length() -> None:
    first = Request("OPTIONS", "sip:door@example.org")
    first.headers.add("CSeq", "1 OPTIONS")
    second = Response(200, "OK", body=b"hello")
    wire = b"\r\n\r\n" + first.to_bytes() + b"\r\n" + second.to_bytes()  # keep-alives
    framer = StreamFramer()
    got = [m for byte in range(len(wire)) for m in framer.feed(wire[byte : byte + 1])]
    assert [type(m) for m in got] == [Request, Response]
    assert isinstance(got[1], Response) and got[1].body == b"hello"
    assert framer.feed(b"") == []
    with pytest.raises(SipError, match="Content-Length"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n")
    with pytest.raises(SipError, match="bytes"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nl: 900000\r\n\r\n")
    with pytest.raises(SipError, match="headers longer"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 20_000)


def test_header_values() -> None:
    plain = Address.parse("sip:door@example.org;tag=88sja8x")
    assert (plain.uri, plain.tag, plain.display) == ("sip:door@example.org", "88sja8x", "")
    assert str(plain) == "<sip:door@example.org>;tag=88sja8x"
    for bad in ("<sip:a@b", "not a uri", '"x" <no-scheme>'):
        with pytest.raises(SipError):
            Address.parse(bad)
    via = Via.parse("SIP / 2.0 / tls  [2001:db8::1]:5061 ;branch=z9hG4bKx;rport")
    assert (via.transport, via.host, via.port, via.branch) == (
        "TLS",
        "2001:db8::1",
        5061,
        "z9hG4bKx",
    )
    assert str(via) == "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKx;rport"
    for bad in ("SIP/2.0/UDP", "HTTP/1.1 host", "SIP/2.0/UDP host:99999", "SIP/2.0/UDP :5060"):
        with pytest.raises(SipError):
            Via.parse(bad)
    for bad in ("1", "x INVITE", "1 INVITE extra", str(2**31) + " INVITE"):
        with pytest.raises(SipError):
            CSeq.parse(bad)


# RFC 7616 §3.9.1's worked example (an HTTP request: the arithmetic is SIP's too).
RFC7616 = {
    "realm": "http-auth@example.org",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_digest_answers_the_rfcs_worked_example(algorithm: str, expected: str) -> None:
    challenge = digest.Challenge.parse(
        f'Digest realm="{RFC7616["realm"]}", qop="auth, auth-int", algorithm={algorithm},'
        f' nonce="{RFC7616["nonce"]}", opaque="{RFC7616["opaque"]}"'
    )
    assert challenge.qop == ("auth", "auth-int") and challenge.usable
    header = digest.authorization(
        challenge, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1, RFC7616["cnonce"]
    )
    params = digest.parse_auth_params(header.removeprefix("Digest "))
    assert params["response"] == expected
    assert (params["nc"], params["qop"], params["opaque"]) == (
        "00000001",
        "auth",
        RFC7616["opaque"],
    )


def test_digest_without_qop_and_bad_challenges() -> None:
    # RFC 2069's form, still what some PBXs send: no qop, no cnonce.
    challenge = digest.Challenge.parse('Digest realm="pbx", nonce="abc"')
    header = digest.authorization(challenge, "door", "secret", "REGISTER", "sip:pbx")
    params = digest.parse_auth_params(header.removeprefix("Digest "))
    assert "cnonce" not in params and "qop" not in params
    assert params["response"] == digest.response(
        challenge, "door", "secret", "REGISTER", "sip:pbx", "", 0
    )
    bad_challenges = [
        'Basic realm="x"',
        'Digest nonce="n"',
        'Digest realm="r", nonce="n", algorithm=SHA-1',
        'Digest realm="r, nonce="n',
    ]
    for bad in bad_challenges:
        with pytest.raises(SipError):
            digest.Challenge.parse(bad)
    body_only = digest.Challenge.parse('Digest realm="r", nonce="n", qop="auth-int"')
    with pytest.raises(SipError, match="auth-int"):
        digest.authorization(body_only, "u", "p", "INVITE", "sip:x")


def test_of_several_challenges_the_first_usable_one_is_answered() -> None:
    """RFC 8760 §2.4: a server lists its challenges in its order of preference; one
    peercam cannot answer (auth-int, an unknown algorithm) is passed over."""
    response = Response(401, "Unauthorized")
    for offered in (
        'Digest realm="pbx", nonce="a", algorithm=SHA-1',
        'Digest realm="pbx", nonce="b", qop="auth-int"',
        'Digest realm="pbx", nonce="c", algorithm=SHA-256, qop="auth"',
        'Digest realm="pbx", nonce="d"',
    ):
        response.headers.add("WWW-Authenticate", offered)
    chosen = digest.challenge_in(response)
    assert (chosen.nonce, chosen.algorithm) == ("c", "SHA-256")
    only_bad = Response(401, "Unauthorized")
    only_bad.headers.add("WWW-Authenticate", 'Digest realm="pbx", nonce="b", qop="auth-int"')
    with pytest.raises(SipError, match="auth-int"):
        digest.challenge_in(only_bad)
    with pytest.raises(SipError, match="without a WWW-Authenticate"):
        digest.challenge_in(Response(401, "Unauthorized"))


# --- SDP ----------------------------------------------------------------------------

PHONE_OFFER = (
    b"v=0\r\no=- 123 456 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\n"
    b"m=audio 7078 RTP/AVP 9 8 0 101 96\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    b"a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=ptime:20\r\na=sendrecv\r\n"
    b"m=video 9078 RTP/AVP 97\r\nc=IN IP4 192.168.1.21\r\na=rtpmap:97 H264/90000\r\n"
    b"a=inactive\r\n"
)


def test_a_phones_offer_and_the_codec_chosen_from_it() -> None:
    from peercam.sip import sdp

    offer = sdp.parse_audio(PHONE_OFFER)
    assert (offer.address, offer.port, offer.direction, offer.ptime) == (
        "192.168.1.20", 7078, "sendrecv", 20,
    )  # fmt: skip
    assert [(f.payload_type, f.name, f.clock_rate, f.channels) for f in offer.formats] == [
        (9, "G722", 8000, 1), (8, "PCMA", 8000, 1), (0, "PCMU", 8000, 1),
        (101, "TELEPHONE-EVENT", 8000, 1), (96, "OPUS", 48000, 2),
    ]  # fmt: skip
    assert offer.formats[4].fmtp == "useinbandfec=1"
    # The phone's order decides among what peercam makes; DTMF at the codec's clock.
    chosen = sdp.choose(offer, ["PCMU", "PCMA", "OPUS"])
    assert chosen is not None and chosen.codec.name == "PCMA"
    assert chosen.telephone_event is not None and chosen.telephone_event.payload_type == 101
    opus = sdp.choose(offer, ["OPUS"])
    assert opus is not None and opus.telephone_event is None  # none offered at 48 kHz
    assert sdp.choose(offer, ["L16"]) is None

    answer = sdp.describe("192.0.2.5", 40000, [chosen.codec, chosen.telephone_event], 7, 1)
    back = sdp.parse_audio(answer)
    assert (back.address, back.port) == ("192.0.2.5", 40000)
    assert [(f.payload_type, f.name) for f in back.formats] == [
        (8, "PCMA"),
        (101, "TELEPHONE-EVENT"),
    ]
    assert back.formats[1].fmtp == "0-16"
    assert b"a=rtpmap:101 telephone-event/8000\r\n" in answer


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5000 RTP/AVP 96\r\n", "no audio"),
        (b"v=0\r\nm=audio 5000 RTP/AVP 0\r\n", "no connection address"),
        (b"v=0\r\nc=IN IP4 phone.local\r\nm=audio 5000 RTP/AVP 0\r\n", "not an IP address"),
        (b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 99999 RTP/AVP 0\r\n", "audio port"),
        (b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5000 TCP/MSRP *\r\n", "audio transport"),
        (b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 0 x\r\n", "payload types"),
        (b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 96\r\na=rtpmap:96 opus\r\n", "rtpmap"),
        (b"v=0\r\nc=IN IP4 \xff\r\n", "UTF-8"),
    ],
)
def test_sdp_that_cannot_be_used_is_a_sip_error(body: bytes, why: str) -> None:
    from peercam.sip import sdp

    with pytest.raises(SipError, match=why):
        sdp.parse_audio(body)
