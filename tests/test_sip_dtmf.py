"""RFC 4733 telephone-events read into key presses (device/peercam/sip/dtmf.py)."""

from __future__ import annotations

from peercam.sip.dtmf import DtmfReceiver, KeyPress, event_payload


def test_a_press_is_told_once_however_many_packets_carry_it() -> None:
    receiver = DtmfReceiver()
    # A press of 5 at timestamp 1000: growing durations, then three end packets.
    packets = [event_payload("5", d, False) for d in (160, 320, 480)]
    packets += [event_payload("5", 640, True)] * 3
    told = [receiver.receive(7, 1000, p) for p in packets]
    assert told[0] == KeyPress("5", 10)
    assert told[1:] == [None] * 5
    # The same key again is a new press (a new timestamp); another phone's too.
    assert receiver.receive(7, 2600, event_payload("5", 160, False)) == KeyPress("5", 10)
    assert receiver.receive(8, 1000, event_payload("#", 160, False)) == KeyPress("#", 10)
    # A late end packet of the first press, reordered behind the second: not again.
    assert receiver.receive(7, 1000, event_payload("5", 640, True)) is None


def test_what_is_not_a_key_is_ignored() -> None:
    receiver = DtmfReceiver()
    assert receiver.receive(1, 10, b"\x05\x80") is None  # short
    assert receiver.receive(1, 20, bytes([16, 0x80, 0, 160])) is None  # flash
    assert receiver.receive(1, 30, bytes([200, 0, 0, 160])) is None  # beyond the keypad
    assert receiver.receive(1, 40, event_payload("D", 160, False)) == KeyPress("D", 10)
