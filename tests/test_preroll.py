"""The pre-roll buffer: the last seconds of the shared stream, trimmed a keyframe group
at a time so that it always starts at a video keyframe and never holds less than its
seconds; the newest keyframe group for snapshots; emptied on clear()."""

from __future__ import annotations

from peercam.media import EncodedFrame
from peercam.recording.preroll import Preroll

FPS = 30
GOP = 30  # a keyframe a second
AUDIO_STEP = 0.02  # an Opus frame every 20 ms


def video(at: float, keyframe: bool = False, codec: str = "h264") -> EncodedFrame:
    data = b"key" if keyframe else b"delta"
    return EncodedFrame(codec, data, keyframe, at, int(at * 90_000), (data,))


def audio(at: float) -> EncodedFrame:
    return EncodedFrame("opus", b"a", False, at, int(at * 48_000), (b"a",))


def stream(seconds: float) -> list[tuple[EncodedFrame, bool]]:
    """Video at FPS with a keyframe every GOP frames, and audio every 20 ms, in
    capture order: what the recorder hands the pre-roll, with its `video` flag."""
    items: list[tuple[EncodedFrame, bool]] = []
    frames = round(seconds * FPS)
    for n in range(frames):
        items.append((video(n / FPS, keyframe=n % GOP == 0), True))
    for n in range(round(seconds / AUDIO_STEP)):
        items.append((audio(n * AUDIO_STEP), False))
    items.sort(key=lambda item: item[0].captured_at)
    return items


def keyframe_times(frames: list[EncodedFrame]) -> list[float]:
    return [f.captured_at for f in frames if f.keyframe]


def test_video_and_audio_before_the_first_keyframe_are_not_kept() -> None:
    preroll = Preroll(2.0)
    preroll.add(video(0.0), video=True)
    preroll.add(audio(0.01), video=False)
    preroll.add(video(1 / FPS), video=True)
    assert len(preroll) == 0
    assert preroll.frames() == []
    first = video(2 / FPS, keyframe=True)
    preroll.add(first, video=True)
    preroll.add(audio(0.07), video=False)
    assert preroll.frames()[0] is first
    assert len(preroll) == 2


def test_the_buffer_holds_at_least_its_seconds_and_starts_at_a_keyframe() -> None:
    seconds = 2.0
    preroll = Preroll(seconds)
    for frame, is_video in stream(10.0):
        preroll.add(frame, is_video)
        held = preroll.frames()
        newest = frame.captured_at
        first = held[0]
        assert first.keyframe and first.codec == "h264", first
        if newest >= seconds:
            # At least `seconds` back, and at most one keyframe interval more.
            assert newest - first.captured_at >= seconds - 1e-9
            assert newest - first.captured_at < seconds + GOP / FPS
    held = preroll.frames()
    assert [f.captured_at for f in held] == sorted(f.captured_at for f in held)
    # Trimmed: ten seconds went in, only the last two or three are held.
    assert keyframe_times(held) == [7.0, 8.0, 9.0]


def test_trimming_drops_the_audio_from_before_the_first_kept_keyframe() -> None:
    preroll = Preroll(1.0)
    for frame, is_video in stream(5.0):
        preroll.add(frame, is_video)
    held = preroll.frames()
    start = held[0].captured_at
    assert held[0].keyframe
    sounds = [f for f in held if f.codec == "opus"]
    assert sounds, "the audio since the keyframe is kept"
    assert min(f.captured_at for f in sounds) >= start
    # Every 20 ms of audio from the keyframe on is there.
    assert len(sounds) == round((4.98 - start) / AUDIO_STEP) + 1


def test_audio_captured_with_the_keyframe_but_queued_before_it_stays() -> None:
    preroll = Preroll(0.5)
    preroll.add(video(0.0, keyframe=True), video=True)
    preroll.add(audio(0.5), video=False)
    # The encoder publishes the keyframe after the audio of the same instant.
    keyframe = video(1.0, keyframe=True)
    together = audio(1.0)
    preroll.add(together, video=False)
    preroll.add(keyframe, video=True)
    preroll.add(audio(1.5), video=False)
    held = preroll.frames()
    assert held[0] is together
    assert held[1] is keyframe
    assert keyframe_times(held) == [1.0]


def test_latest_group_is_the_newest_keyframe_and_the_video_after_it() -> None:
    preroll = Preroll(10.0)
    preroll.add(video(0.0, keyframe=True), video=True)
    preroll.add(video(0.1), video=True)
    newest = video(0.2, keyframe=True)
    preroll.add(newest, video=True)
    preroll.add(audio(0.21), video=False)
    after = video(0.3)
    preroll.add(after, video=True)
    preroll.add(audio(0.31), video=False)
    assert preroll.latest_group("h264") == [newest, after]
    # Another codec's group: there is none.
    assert preroll.latest_group("vp8") == []


def test_latest_group_picks_the_codec_asked_for() -> None:
    preroll = Preroll(10.0)
    h264_key = video(0.0, keyframe=True)
    preroll.add(h264_key, video=True)
    vp8_key = video(0.01, keyframe=True, codec="vp8")
    preroll.add(vp8_key, video=True)
    h264_delta = video(0.02)
    preroll.add(h264_delta, video=True)
    assert preroll.latest_group("h264") == [h264_key, h264_delta]
    assert preroll.latest_group("vp8") == [vp8_key]


def test_clear_empties_the_buffer_and_waits_for_a_keyframe_again() -> None:
    preroll = Preroll(2.0)
    for frame, is_video in stream(3.0):
        preroll.add(frame, is_video)
    assert len(preroll) > 0
    preroll.clear()
    assert len(preroll) == 0
    assert preroll.frames() == []
    assert preroll.latest_group("h264") == []
    # Its keyframes went too: what follows is not decodable until the next one.
    preroll.add(video(3.0), video=True)
    preroll.add(audio(3.0), video=False)
    assert len(preroll) == 0
    key = video(4.0, keyframe=True)
    preroll.add(key, video=True)
    assert preroll.frames() == [key]


def test_a_picture_of_the_old_group_queued_after_newer_audio_is_dropped_too() -> None:
    # Video encodes slower than audio: audio captured after a keyframe can be queued
    # before the previous group's last picture, and that picture, and one arriving
    # late, must not end up ahead of the keyframe a clip starts with.
    preroll = Preroll(0.5)
    for frame, is_video in [
        (video(0.0, keyframe=True), True),
        (audio(0.90), False),
        (audio(1.01), False),
        (video(0.967), True),
        (video(1.0, keyframe=True), True),
        (video(1.6), True),  # trims to the 1.0 group
        (video(0.99), True),  # later still, from the dropped group
    ]:
        preroll.add(frame, is_video)
    kept = preroll.frames()
    assert [(f.codec, f.captured_at) for f in kept] == [
        ("opus", 1.01),
        ("h264", 1.0),
        ("h264", 1.6),
    ]
    assert next(f for f in kept if f.codec == "h264").keyframe
