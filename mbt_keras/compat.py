"""Where the two pinned stacks differ (README "Which stack you get"), written once.

Legacy: TFX 1.16 / TF 2.16 / Keras 3.12 / PyAV 17 / numpy 1.26 on Python 3.10.
Current: TFX 1.21 / TF 2.21 / Keras 3.15 / PyAV 19 / numpy 2 on Python 3.12-3.13.
Each entry is data or a tiny function that the one place it bites imports; this module reads
installed versions only, so importing it costs nothing and imports none of those libraries.
"""
from importlib.metadata import version


def _major(distribution: str) -> int:
    return int(version(distribution).split(".")[0])


# PyAV 17 decodes container metadata strictly unless asked not to (one bad tag made a clip
# unreadable); PyAV 19 always decodes it with surrogateescape and no longer takes the option.
AV_OPEN_OPTIONS = {"metadata_errors": "ignore"} if _major("av") < 18 else {}
