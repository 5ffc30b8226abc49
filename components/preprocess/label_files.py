"""Label files users arrive with -> ClipRecords and a class map.

Formats: AudioSet segment CSVs (+ class_labels_indices.csv), VGGSound's CSV, and a generic
CSV/JSONL (path or URI, labels, optional start/end/split/clip_id). Files are read through
`tf.io.gfile`, so gs:// and other TensorFlow filesystems work. A row that cannot become a
clip (unknown label, malformed fields) is returned as a record with `error` set, never
raised: the Beam job sends it to the dead letters so that read = written + rejected.
"""
import csv
import io
import json
import os
from typing import Dict, List, NamedTuple, Optional, Tuple


FORMATS = ("generic", "audioset", "vggsound")
# Separators accepted between labels in one generic CSV cell.
LABEL_SEPARATORS = (";", "|")


class ClipRecord(NamedTuple):
    clip_id: str
    uri: str
    labels: Tuple[str, ...]   # class names
    start: Optional[float]
    end: Optional[float]
    split: Optional[str]
    error: Optional[str] = None   # set for rows rejected while parsing


ClassMap = Dict[str, int]


def read_class_map(path: str) -> ClassMap:
    """`index,name` CSV (our class_map.csv) or AudioSet's `index,mid,display_name`."""
    rows = list(csv.DictReader(_read_text(path).splitlines()))
    name_key = "display_name" if rows and "display_name" in rows[0] else "name"
    return {row[name_key]: int(row["index"]) for row in rows}


def write_class_map(class_map: ClassMap, path: str) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "name"])
    writer.writerows((i, n) for n, i in sorted(class_map.items(), key=lambda kv: kv[1]))
    import tensorflow as tf  # gfile; imported on use so that CLI parsers load fast
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(out.getvalue())


def parse_label_file(path: str, videos: str, fmt: str = "generic",
                     class_map_path: Optional[str] = None,
                     video_template: str = "{ytid}.mp4",
                     presegmented: bool = False) -> Tuple[List[ClipRecord], ClassMap]:
    """Parses `path` into records whose uris are resolved against the `videos` folder.

    Without `class_map_path` the class map is every label seen, sorted (pass the map of the
    training data when parsing other data, or indices will disagree). AudioSet and VGGSound
    name videos by YouTube id: `video_template` formats {ytid}, {start} and {end} (whole
    seconds); `presegmented` says the files hold only the labelled segment, so start/end
    are not applied again.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r}: expected one of {FORMATS}")
    if fmt == "audioset":
        if not class_map_path:
            raise ValueError("AudioSet labels need class_labels_indices.csv (class_map_path)")
        rows = _audioset_rows(path, class_map_path, videos, video_template, presegmented)
    elif fmt == "vggsound":
        rows = _vggsound_rows(path, videos, video_template, presegmented)
    else:
        rows = _generic_rows(path, videos)
    class_map = read_class_map(class_map_path) if class_map_path else {
        name: i for i, name in enumerate(sorted({n for r in rows if not r.error for n in r.labels}))}
    return [_check_labels(r, class_map) for r in rows], class_map


def _check_labels(record: ClipRecord, class_map: ClassMap) -> ClipRecord:
    if record.error:
        return record
    unknown = [n for n in record.labels if n not in class_map]
    if unknown:
        return record._replace(error=f"unknown label(s) {unknown} for clip {record.clip_id} "
                                     f"({record.uri}): not in the class map")
    if not record.labels:
        return record._replace(error=f"no labels for clip {record.clip_id} ({record.uri})")
    return record


def _read_text(path: str) -> str:
    import tensorflow as tf
    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def _resolve(uri: str, videos: str) -> str:
    return uri if "://" in uri or os.path.isabs(uri) else os.path.join(videos, uri)


def _number(value) -> Optional[float]:
    return None if value is None or str(value).strip() == "" else float(value)


def _bad_row(where: str, row, error: Exception) -> ClipRecord:
    return ClipRecord(clip_id=where, uri=str(row), labels=(), start=None, end=None, split=None,
                      error=f"malformed row {where}: {error}")


def _generic_rows(path: str, videos: str) -> List[ClipRecord]:
    text = _read_text(path)
    if path.endswith((".jsonl", ".json")):
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((f"{path}:{n}", json.loads(line)))
                except ValueError as error:
                    items.append((f"{path}:{n}", error))
    else:
        items = [(f"{path}:{n}", row)
                 for n, row in enumerate(csv.DictReader(io.StringIO(text)), 2)]
    records = []
    for where, row in items:
        try:
            if isinstance(row, Exception):
                raise row
            uri = row.get("path") or row.get("uri")
            if not uri:
                raise ValueError("no 'path' or 'uri'")
            labels = row.get("labels", "")
            if isinstance(labels, str):
                for sep in LABEL_SEPARATORS:
                    labels = labels.replace(sep, ",")
                labels = [n.strip() for n in labels.split(",")]
            clip_id = row.get("clip_id") or os.path.splitext(os.path.basename(uri))[0]
            records.append(ClipRecord(
                clip_id=str(clip_id), uri=_resolve(uri, videos),
                labels=tuple(n for n in labels if n), start=_number(row.get("start")),
                end=_number(row.get("end")), split=row.get("split") or None))
        except (ValueError, TypeError, AttributeError) as error:
            records.append(_bad_row(where, row, error))
    return records


def _segment_record(ytid, start, end, labels, split, videos, template, presegmented):
    uri = template.format(ytid=ytid, start=int(start), end=int(end))
    return ClipRecord(clip_id=f"{ytid}_{int(start * 1000)}", uri=_resolve(uri, videos),
                      labels=tuple(labels), start=None if presegmented else start,
                      end=None if presegmented else end, split=split)


def _audioset_rows(path, class_map_path, videos, template, presegmented):
    """`YTID, start_seconds, end_seconds, "mid,mid"`; '#' lines are headers."""
    indices = list(csv.DictReader(_read_text(class_map_path).splitlines()))
    mid_to_name = {row["mid"]: row["display_name"] for row in indices}
    records = []
    lines = [l for l in _read_text(path).splitlines() if l.strip() and not l.startswith("#")]
    for n, row in enumerate(csv.reader(lines, skipinitialspace=True), 1):
        try:
            ytid, start, end, mids = row
            names = [mid_to_name.get(m, m) for m in mids.split(",")]
            records.append(_segment_record(ytid, float(start), float(end), names, None,
                                           videos, template, presegmented))
        except ValueError as error:
            records.append(_bad_row(f"{path}:{n}", row, error))
    return records


def _vggsound_rows(path, videos, template, presegmented):
    """`youtube_id,start_seconds,label,split` with no header; VGGSound clips are 10 s."""
    records = []
    for n, row in enumerate(csv.reader(_read_text(path).splitlines()), 1):
        try:
            ytid, start, label, split = row
            records.append(_segment_record(ytid, float(start), float(start) + 10.0, [label],
                                           split, videos, template, presegmented))
        except ValueError as error:
            records.append(_bad_row(f"{path}:{n}", row, error))
    return records

