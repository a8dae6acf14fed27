from __future__ import annotations

from peercam.encode.keyframes import KeyframePolicy


def test_requests_inside_the_gap_are_deferred_not_lost() -> None:
    policy = KeyframePolicy(min_gap=0.5)
    assert not policy.should_force(0.0)
    policy.request()
    assert policy.should_force(0.0)
    policy.keyframe_sent(0.0, forced=True)
    policy.request()  # 100 viewers asking at once count as one request
    policy.request()
    assert not policy.should_force(0.2)
    assert not policy.should_force(0.49)
    assert policy.should_force(0.5)  # served as soon as the gap ends
    policy.keyframe_sent(0.5, forced=True)
    assert not policy.should_force(0.6)


def test_a_natural_keyframe_satisfies_waiting_viewers_without_using_the_gap() -> None:
    policy = KeyframePolicy(min_gap=0.5)
    policy.request()
    policy.keyframe_sent(1.0, forced=False)
    assert not policy.pending
    policy.request()
    assert policy.should_force(1.01)


def test_at_most_one_forced_keyframe_per_gap_under_constant_requests() -> None:
    policy = KeyframePolicy(min_gap=0.5)
    forced = 0
    for frame in range(300):  # 10 s at 30 fps, a request before every frame
        now = frame / 30
        policy.request()
        if policy.should_force(now):
            forced += 1
            policy.keyframe_sent(now, forced=True)
    assert 19 <= forced <= 21
