"""The one window rule: which frames and audio samples a window of a clip takes.

Written once, free of TensorFlow, for every reader of windows: the trainer's input pipeline
and the exported model (through `tf.experimental.numpy`), the client (`serving/client.py`),
the timeline and batch inference (NumPy). Frames are counted at a fixed rate from the start of
the source, so a window is an index range, never a float comparison, and two readers of the
same window take the same frames. A clip shorter than the window is looped
(`window_indices`).
"""
import math
from typing import List

import numpy as np

# Absorbs float rounding of k * stride at exact integers (stride 2.9999998 -> 3).
_INDEX_EPSILON = 1e-4


def window_indices(available, count: int, stride=1.0, first=0.0, xp=np):
    """`count` indices into `available` stored items (frames, log-mel rows or samples) from
    position `first` at `stride`, wrapped around the end: a clip shorter than its window is
    looped, never padded. That is what the paper's loader does (DMVR's `sample_sequence`,
    which Scenic's MBT dataset uses, repeats a sequence shorter than the window), and it is the
    one rule of both sides: the trainer's windows (`input_pipeline.frame_indices`,
    `spec_window`) and what the client, the timeline and batch inference send
    (`serving.client.window_inputs`), so a short clip reaches the model as the same inputs.

    `xp` is the array namespace: NumPy, or `tf.experimental.numpy` inside a TF graph, where
    `available`, `stride` and `first` may be tensors. The arithmetic is float32 in both, so
    both pick the same.
    """
    f32 = xp.float32
    positions = (xp.asarray(first, dtype=f32) + xp.arange(count, dtype=f32)
                 * xp.asarray(stride, dtype=f32) + xp.asarray(_INDEX_EPSILON, dtype=f32))
    return xp.asarray(xp.floor(positions), dtype=xp.int32) % xp.asarray(available, dtype=xp.int32)


def frame_indices(available, wanted: int, xp=np):
    """`wanted` indices spread over `available` frames, at the stride available / wanted from
    the first: the frames of a window that holds `available` (`window_indices`)."""
    stride = xp.asarray(available, dtype=xp.float32) / xp.asarray(wanted, dtype=xp.float32)
    return window_indices(available, wanted, stride, xp=xp)


def stored_fps(num_frames: int, window_seconds: float, fps: float = 25, phases: int = 5) -> float:
    """The lowest frame rate that still holds every frame the paper's training sampling takes
    from a record at `fps` (25, the paper's), for random starts on `phases` or more positions
    per stride: `num_frames` over `window_seconds` is a stride of s = window_seconds * fps /
    num_frames frames; storing every k-th frame (k dividing both s and fps) keeps exactly the
    frames of starts on a k / fps grid, s / k positions per stride. The paper's 8 frames over
    8 s (s = 25) -> 5 fps, the same instants in a fifth of the bytes; a stride that is not a
    whole number of frames (32 frames over 8 s) or too short to thin keeps `fps`."""
    stride = window_seconds * fps / num_frames
    if abs(stride - round(stride)) > 1e-6 or abs(fps - round(fps)) > 1e-6:
        return float(fps)
    stride, whole = int(round(stride)), int(round(fps))
    steps = [k for k in range(1, whole + 1)
             if whole % k == 0 and stride % k == 0 and stride // k >= phases]
    return whole / max(steps, default=1)


def frames_of(seconds: float, rate: float) -> int:
    """Whole frames (or samples) of `seconds` at `rate`, as the decoder counts them."""
    return int(math.floor(seconds * rate + 1e-6))


def span(start: float, seconds: float, rate: float):
    """(first, count): the window [start, start + seconds) as an index range at `rate`
    (frames per second or samples per second) counted from the source's time 0."""
    return int(round(start * rate)), max(1, frames_of(seconds, rate))


def start_frames(total: int, length: int, step: int) -> List[int]:
    """First frames of the windows of `length` frames a timeline takes over `total` frames:
    every `step` frames while a whole window fits, then one window ending at the end if the
    last one left more than a frame uncovered; one window [0, total) when total <= length."""
    if total <= length:
        return [0]
    firsts = list(range(0, total - length + 1, max(1, step)))
    if firsts[-1] + length < total - 1:
        firsts.append(total - length)
    return firsts


def starts(duration: float, seconds: float, hop: float, fps: float) -> List[float]:
    """Start times in seconds of `start_frames` for a clip of `duration` seconds. Starts lie
    on the frame grid (multiples of 1 / fps), so a window decoded on its own
    (`clip_inputs(start=...)`) takes exactly the frames the timeline takes for it."""
    if hop <= 0 or seconds <= 0:
        raise ValueError(f"need hop > 0 and seconds > 0, got hop={hop} seconds={seconds}")
    return [first / fps for first in start_frames(
        frames_of(duration, fps), frames_of(seconds, fps), frames_of(hop, fps))]
