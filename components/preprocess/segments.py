"""How a label-file row longer than a record should hold is cut: consecutive segments of
`--segment-seconds`, each a record with the row's labels and an id naming the segment.

Cutting is the default (DEFAULT_SEGMENT_SECONDS) rather than refusing: a user who labels whole
films wants them trained on, a record of a minute is decoded and written in bounded memory on
any worker, the minutes of one film are decoded by many workers at once, and training samples
every part of the film each epoch instead of one window of one huge record. Free of Beam and
TensorFlow, so the command-line parsers read the default without loading them.
"""
import math
from typing import List, Tuple

# A minute is 1500 frames at the paper's 25 fps (about 45 MB of JPEGs at 256 pixels) and
# still holds 7 of the paper's 8 s training windows. 0 keeps every row whole.
DEFAULT_SEGMENT_SECONDS = 60.0
# A last segment shorter than this joins the one before it (at least a second of log-mel).
MIN_SEGMENT_TAIL_S = 1.0


def segment_windows(start: float, end: float, seconds: float) -> List[Tuple[float, float]]:
    """[start, end) cut into consecutive windows of `seconds` (0: not cut); a last window
    shorter than MIN_SEGMENT_TAIL_S joins the one before it."""
    if not seconds or end - start <= seconds:
        return [(start, end)]
    count = math.ceil((end - start) / seconds - 1e-9)
    if end - (start + (count - 1) * seconds) < MIN_SEGMENT_TAIL_S:
        count -= 1
    bounds = [start + k * seconds for k in range(count)] + [end]
    return list(zip(bounds[:-1], bounds[1:]))


def segment_clip_id(clip_id: str, start: float, end: float) -> str:
    """`<row's clip id>@<start ms>-<end ms>`, times in the source: the segment and its row
    (a window id, label_files.window_clip_id, uses `_`, so the two never collide)."""
    return f"{clip_id}@{int(round(start * 1000))}-{int(round(end * 1000))}"
