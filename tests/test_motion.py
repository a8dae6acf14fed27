"""Motion detection on synthetic pictures: a scene change fires once, noise under the
threshold never, a masked region is ignored, and the cool-down holds."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from peercam.config import MotionConfig, MotionMask
from peercam.motion.detector import MotionDetector

HEIGHT, WIDTH = 240, 320
rng = np.random.default_rng(7)


def scene(noise: int = 6, box: tuple[int, int, int, int] | None = None) -> npt.NDArray[np.uint8]:
    """A mid-grey picture with sensor noise, and a bright box (x, y, w, h) if given."""
    picture = np.full((HEIGHT, WIDTH), 110, dtype=np.int16)
    picture += rng.integers(-noise, noise + 1, size=picture.shape, dtype=np.int16)
    if box is not None:
        x, y, w, h = box
        picture[y : y + h, x : x + w] = 230
    return np.clip(picture, 0, 255).astype(np.uint8)


class Events:
    def __init__(self, config: MotionConfig) -> None:
        self.started = 0
        self.continued = 0
        self.detector = MotionDetector(config, self._start, self._continue)

    def _start(self) -> None:
        self.started += 1

    def _continue(self) -> None:
        self.continued += 1

    def run(self, pictures: list[npt.NDArray[np.uint8]], start: float = 0.0) -> None:
        for index, picture in enumerate(pictures):
            self.detector.feed(picture, start + index * 0.2)


def test_a_scene_change_fires_one_event() -> None:
    events = Events(MotionConfig(enabled=True))
    box = (100, 60, 80, 80)  # ~8 % of the picture
    events.run([scene() for _ in range(10)] + [scene(box=box) for _ in range(10)])
    assert events.started == 1
    # The change is one step; the box standing still afterwards is not motion.
    assert events.continued == 0


def test_noise_under_the_threshold_fires_nothing() -> None:
    events = Events(MotionConfig(enabled=True, threshold=25))
    events.run([scene(noise=40) for _ in range(100)])  # heavy noise, averaged away
    assert events.started == 0
    small_change = (100, 60, 80, 80)
    quiet = [scene()] * 5
    dim = scene()
    x, y, w, h = small_change
    dim[y : y + h, x : x + w] += 15  # brighter, but by less than the threshold
    events.run(quiet + [dim] * 5)
    assert events.started == 0


def test_a_change_too_small_in_area_fires_nothing() -> None:
    events = Events(MotionConfig(enabled=True, min_area=0.05))
    events.run([scene()] * 5 + [scene(box=(10, 10, 40, 40))] * 5)  # ~2 % of the picture
    assert events.started == 0


def test_motion_inside_a_mask_is_ignored_and_outside_it_is_not() -> None:
    mask = MotionMask(x=0.5, y=0.0, width=0.5, height=1.0)  # the right half
    events = Events(MotionConfig(enabled=True, masks=[mask]))
    events.run([scene()] * 5 + [scene(box=(200, 60, 80, 80))] * 5)
    assert events.started == 0
    events.run([scene(box=(20, 60, 80, 80))] * 5, start=10.0)
    assert events.started == 1


def test_within_the_cool_down_motion_continues_the_event_instead() -> None:
    events = Events(MotionConfig(enabled=True, cooldown_seconds=30))
    box_a, box_b = (20, 60, 80, 80), (200, 60, 80, 80)
    pictures = [scene()] * 3 + [scene(box=box_a)] * 3 + [scene()] * 3 + [scene(box=box_b)] * 3
    events.run(pictures)  # 2.4 s of pictures: two changes, one event
    assert events.started == 1 and events.continued >= 1
    events.run([scene()] * 3 + [scene(box=box_a)] * 3, start=40.0)  # after the cool-down
    assert events.started == 2
