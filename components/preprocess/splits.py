"""Which output split a clip goes to: the label file's split when it has one, else a stable
hash of the clip id (so a clip keeps its split when the label file grows)."""
import hashlib
from typing import Dict, List

from components.preprocess.label_files import ClipRecord

# Output splits and their hash buckets unless a job names others (`--splits train:3,eval:1`).
DEFAULT_SPLITS = {"train": 3, "eval": 1}
# Split names label files use for held-out data, mapped to 'eval' when that is an output.
EVAL_ALIASES = ("test", "val", "valid", "validation")


def assign_splits(records: List[ClipRecord], hash_buckets: Dict[str, int]) -> List[ClipRecord]:
    """Sets every record's split to one of `hash_buckets`' names (insertion order matters
    for hashing). A split value that names no output split marks the record as an error."""
    names = list(hash_buckets)
    total = sum(hash_buckets.values())
    out = []
    for record in records:
        split = record.split
        if split and split not in names and split.lower() in EVAL_ALIASES and "eval" in names:
            split = "eval"
        if split is None:
            bucket = int(hashlib.sha256(record.clip_id.encode()).hexdigest(), 16) % total
            for name in names:
                bucket -= hash_buckets[name]
                if bucket < 0:
                    split = name
                    break
        elif split not in names and not record.error:
            record = record._replace(error=f"split {split!r} of clip {record.clip_id} "
                                           f"({record.uri}) is none of the output splits {names}")
            split = names[0]
        out.append(record._replace(split=split))
    return out
