"""Which output split a clip goes to: the label file's split when it has one, else a stable
hash of the clip's split group, the source video (or the label file's `group` column), so
that the windows and segments of one video never land in both training and evaluation, and
a video keeps its split when the label file grows."""
import hashlib
import os
from typing import Dict

from components.preprocess.label_files import ClipRecord

# Output splits and their hash buckets unless a job names others (`--splits train:3,eval:1`).
DEFAULT_SPLITS = {"train": 3, "eval": 1}
# Split names label files use for held-out data, mapped to 'eval' when that is an output.
EVAL_ALIASES = ("test", "val", "valid", "validation")


def split_group(record: ClipRecord) -> str:
    """What the hash decides a split for: the record's group, set by the label-file reader
    (the source id, the YouTube id, or the `group` column), else its video's file name."""
    return record.group or os.path.splitext(os.path.basename(record.uri))[0]


def assign_split(record: ClipRecord, hash_buckets: Dict[str, int]) -> ClipRecord:
    """The record with its split set to one of `hash_buckets`' names (insertion order
    matters for hashing). A split value that names no output split marks the record as an
    error."""
    names = list(hash_buckets)
    split = record.split
    if split and split not in names and split.lower() in EVAL_ALIASES and "eval" in names:
        split = "eval"
    if split is None:
        bucket = int(hashlib.sha256(split_group(record).encode()).hexdigest(), 16) % sum(
            hash_buckets.values())
        for name in names:
            bucket -= hash_buckets[name]
            if bucket < 0:
                split = name
                break
    elif split not in names and not record.error:
        record = record._replace(error=f"split {split!r} of clip {record.clip_id} "
                                       f"({record.uri}) is none of the output splits {names}")
        split = names[0]
    return record._replace(split=split)
