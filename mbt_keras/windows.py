"""The one window rule: which frames and audio samples a window of a clip takes.

Written once, free of TensorFlow, for every reader of windows: the exported model
(`export.py`, through `tf.experimental.numpy`), the client (`serving/client.py`), the
timeline and batch inference (NumPy). Frames are counted at a fixed rate from the start of
the source, so a window is an index range, never a float comparison, and two readers of the
same window take the same frames.
"""
import math
from typing import List

import numpy as np

# Absorbs float rounding of k * stride at exact integers (stride 2.9999998 -> 3).
_INDEX_EPSILON = 1e-4


def frame_indices(available, wanted: int, xp=np):
    """`wanted` indices into `available` frames at the stride available / wanted from the
    first, as the trainer's `input_pipeline.frame_indices` takes frames at t * fps / num_frames.

    `xp` is the array namespace: NumPy, or `tf.experimental.numpy` inside a TF graph, where
    `available` may be a tensor. The arithmetic is float32 in both, so both pick the same.
    """
    f32 = xp.float32
    stride = xp.asarray(available, dtype=f32) / xp.asarray(wanted, dtype=f32)
    positions = xp.arange(wanted, dtype=f32) * stride + xp.asarray(_INDEX_EPSILON, dtype=f32)
    return xp.asarray(xp.floor(positions), dtype=xp.int32)


def span(start: float, seconds: float, rate: float):
    """(first, count): the window [start, start + seconds) as an index range at `rate`
    (frames per second or samples per second) counted from the source's time 0."""
    return int(round(start * rate)), max(1, int(math.floor(seconds * rate + 1e-6)))


def starts(duration: float, seconds: float, hop: float, fps: float) -> List[float]:
    """Start times of the windows a timeline takes over `duration` seconds: every `hop`
    seconds while a whole window fits, then one window ending at the end if the last one
    left more than a frame uncovered; one window for a clip shorter than `seconds`.

    Starts lie on the frame grid (multiples of 1 / fps), so a window decoded on its own
    (`clip_inputs(start=...)`) takes exactly the frames the timeline takes for it.
    """
    if hop <= 0 or seconds <= 0:
        raise ValueError(f"need hop > 0 and seconds > 0, got hop={hop} seconds={seconds}")
    total, length, step = (int(math.floor(x * fps + 1e-6)) for x in (duration, seconds, hop))
    if total <= length:
        return [0.0]
    firsts = list(range(0, total - length + 1, max(1, step)))
    if firsts[-1] + length < total - 1:
        firsts.append(total - length)
    return [first / fps for first in firsts]
