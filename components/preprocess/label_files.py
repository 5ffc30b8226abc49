"""Label files users arrive with -> ClipRecords and a class map.

Formats: AudioSet segment CSVs (+ class_labels_indices.csv), VGGSound's CSV, Epic-Kitchens-100's
action segments (+ its verb and noun classes), and a generic CSV/JSONL (path or URI, labels,
optional start/end/split/clip_id). Files are read through
`tf.io.gfile`, so gs:// and other TensorFlow filesystems work. A row that cannot become a
clip (unknown label, malformed fields, a duplicate) is returned as a record with `error` set,
never raised: the Beam job sends it to the dead letters so that read = written + rejected.
Every record names its label-file row (`row`, "path:line"), so that rejections of several
windows of one video can be told apart. Only a file that cannot be read at all raises
(`LabelFileError`, one line naming the file and line).
"""
import csv
import io
import json
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

from mbt_keras.user_error import UserError


FORMATS = ("generic", "audioset", "vggsound", "epic-kitchens")
# Where a format's videos are, relative to --videos, unless --video-template says otherwise.
VIDEO_TEMPLATES = {"epic-kitchens": "{participant_id}/videos/{video_id}.MP4"}
DEFAULT_VIDEO_TEMPLATE = "{ytid}.mp4"
# Class names of a verb+noun class map (Epic-Kitchens): verbs, then nouns, in one index space
# (the model's outputs); a name is its head's prefix and the dataset's key ("noun:tap").
VERB_NOUN_PREFIXES = ("verb:", "noun:")
# Separators accepted between labels in one generic CSV cell.
LABEL_SEPARATORS = (";", "|")


class ClipRecord(NamedTuple):
    clip_id: str
    uri: str
    labels: Tuple[str, ...]   # class names
    start: Optional[float]
    end: Optional[float]
    split: Optional[str]
    error: Optional[str] = None        # set for rows rejected while parsing
    error_kind: Optional[str] = None   # the dead-letter kind of `error` (None: 'bad_row')
    row: Optional[str] = None          # "label file:line" the record comes from


class LabelFileError(UserError):
    """A label file, class map or listing that cannot be read at all; the message is one
    line."""


ClassMap = Dict[str, int]


def window_clip_id(source_id: str, start: Optional[float], end: Optional[float]) -> str:
    """The clip id of a window of a source: `<source id>` for the whole file, else
    `<source id>_<start ms>_<end ms>` (`end` when open-ended), so windows of one video get
    distinct ids that stay the same across runs (docs/data_format.md)."""
    if start is None and end is None:
        return source_id
    end_ms = "end" if end is None else int(round(end * 1000))
    return f"{source_id}_{int(round((start or 0.0) * 1000))}_{end_ms}"


def read_class_map(path: str, encoding: str = "utf-8") -> ClassMap:
    """`index,name` CSV (our class_map.csv), AudioSet's `index,mid,display_name` or
    Epic-Kitchens-100's `id,key,instances,category` (EPIC_100_verb_classes.csv)."""
    rows = list(csv.DictReader(_read_text(path, encoding).splitlines()))
    index_key = "id" if rows and "index" not in rows[0] else "index"
    try:
        class_map = {row[_name_key(rows)]: int(row[index_key]) for row in rows}
    except (KeyError, TypeError, ValueError):
        class_map = {}
    if not class_map:
        raise LabelFileError(f"{path} is no class map: expected a CSV with columns index,name "
                             "(or AudioSet's index,mid,display_name, or Epic-Kitchens' "
                             "id,key,...) and one row per class")
    return class_map


def read_class_maps(path: str, noun_path: Optional[str] = None,
                    encoding: str = "utf-8") -> ClassMap:
    """The class map of `path`, or with `noun_path` the verb+noun map (verb_noun_class_map)
    of a verb classes file and a noun classes file (Epic-Kitchens')."""
    if not noun_path:
        return read_class_map(path, encoding)
    return verb_noun_class_map(read_class_map(path, encoding), read_class_map(noun_path, encoding))


def verb_noun_class_map(verbs: ClassMap, nouns: ClassMap) -> ClassMap:
    """One class map of a verb+noun model: verb i is `verb:<key>` at i, noun j `noun:<key>` at
    len(verbs) + j (the model's output order; keys may repeat across the two, as Epic's
    'filter' does)."""
    verb, noun = VERB_NOUN_PREFIXES
    return {**{verb + name: i for name, i in verbs.items()},
            **{noun + name: len(verbs) + j for name, j in nouns.items()}}


def head_sizes(class_map: ClassMap) -> Tuple[int, ...]:
    """Classes per head: (verbs, nouns) for a verb+noun map (verb_noun_class_map), else
    (all,)."""
    verb, noun = VERB_NOUN_PREFIXES
    verbs = sum(name.startswith(verb) for name in class_map)
    nouns = sum(name.startswith(noun) for name in class_map)
    return (verbs, nouns) if verbs and verbs + nouns == len(class_map) else (len(class_map),)


def num_classes(class_map: ClassMap):
    """The model config's `num_classes` for `class_map`: the class count, or (verbs, nouns)."""
    sizes = head_sizes(class_map)
    return sizes[0] if len(sizes) == 1 else sizes


def head_indices(class_map: ClassMap) -> ClassMap:
    """{name: index within its head}, what a record stores under clip/label/index: a noun of a
    verb+noun map counts from the first noun, so a record's [verb, noun] are the two index
    spaces `input_pipeline.label_vector` and the verb_noun head read. Other maps unchanged."""
    sizes = head_sizes(class_map)
    if len(sizes) == 1:
        return dict(class_map)
    noun = VERB_NOUN_PREFIXES[1]
    return {name: i - sizes[0] if name.startswith(noun) else i for name, i in class_map.items()}


def read_class_groups(path: str, encoding: str = "utf-8") -> Dict[str, str]:
    """{class name: group} from a class map's optional `group` column (the demo's: which
    modality decides a class), so that reports group classes by what the data says; {} when
    the map has no such column."""
    rows = list(csv.DictReader(_read_text(path, encoding).splitlines()))
    return {row[_name_key(rows)]: row["group"] for row in rows if row.get("group")}


def _name_key(rows) -> str:
    columns = rows[0] if rows else {}
    return next((key for key in ("display_name", "key") if key in columns), "name")


def class_names(class_map: ClassMap, size: Optional[int] = None) -> List[str]:
    """Names by class index 0 .. size - 1 (default: through the largest index in the map); an
    index the map lacks is named `class_<i>`, so a name's position is always its index."""
    by_index = {index: name for name, index in class_map.items()}
    size = max(by_index, default=-1) + 1 if size is None else size
    return [by_index.get(i, f"class_{i}") for i in range(size)]


def write_class_map(class_map: ClassMap, path: str,
                    groups: Optional[Dict[str, str]] = None) -> None:
    """`index,name` CSV, plus a `group` column when `groups` ({name: group}) is given."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "name"] + (["group"] if groups else []))
    writer.writerows([i, n] + ([groups.get(n, "")] if groups else [])
                     for n, i in sorted(class_map.items(), key=lambda kv: kv[1]))
    import tensorflow as tf  # gfile; imported on use so that CLI parsers load fast
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(out.getvalue())


def parse_label_file(path: str, videos: str, fmt: str = "generic",
                     class_map_path: Optional[str] = None,
                     video_template: Optional[str] = None,
                     presegmented: bool = False,
                     encoding: str = "utf-8",
                     noun_class_map_path: Optional[str] = None,
                     ) -> Tuple[List[ClipRecord], ClassMap]:
    """Parses `path` into records whose uris are resolved against the `videos` folder.

    Without `class_map_path` the class map is every label seen, sorted (pass the map of the
    training data when parsing other data, or indices will disagree). AudioSet and VGGSound
    name videos by YouTube id: `video_template` formats {ytid}, {start} and {end} (whole
    seconds); Epic-Kitchens by its columns, {participant_id}, {video_id}, {narration_id},
    {start} and {end} (default VIDEO_TEMPLATES'). `presegmented` says the files hold only the
    labelled segment, so start/end are not applied again. Epic-Kitchens needs its verb
    classes as `class_map_path` and its noun classes as `noun_class_map_path`; its class map
    is verb_noun_class_map's. `encoding` is that of the label file and the class maps; bytes
    that do not decode raise LabelFileError naming the file and line.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r}: expected one of {FORMATS}")
    video_template = video_template or VIDEO_TEMPLATES.get(fmt, DEFAULT_VIDEO_TEMPLATE)
    if noun_class_map_path and fmt != "epic-kitchens":
        raise UserError(f"{noun_class_map_path}: a noun class map (--noun-class-map) is read "
                        "with --label-format epic-kitchens only")
    class_map = None
    if fmt == "audioset":
        if not class_map_path:
            raise UserError(f"{path}: AudioSet labels need their class map, "
                            "class_labels_indices.csv (--class-map)")
        rows = _audioset_rows(path, class_map_path, videos, video_template, presegmented,
                              encoding)
    elif fmt == "vggsound":
        rows = _vggsound_rows(path, videos, video_template, presegmented, encoding)
    elif fmt == "epic-kitchens":
        if not (class_map_path and noun_class_map_path):
            raise UserError(f"{path}: Epic-Kitchens labels need their verb and noun classes, "
                            "--class-map EPIC_100_verb_classes.csv --noun-class-map "
                            "EPIC_100_noun_classes.csv")
        class_map = read_class_maps(class_map_path, noun_class_map_path, encoding)
        rows = _epic_kitchens_rows(path, class_map, videos, video_template, presegmented,
                                   encoding)
    else:
        rows = _generic_rows(path, videos, encoding)
    if class_map is None:
        class_map = read_class_map(class_map_path, encoding) if class_map_path else {
            name: i for i, name in enumerate(sorted({n for r in rows if not r.error
                                                     for n in r.labels}))}
    return reject_duplicates([_check_labels(r, class_map) for r in rows]), class_map


def _check_labels(record: ClipRecord, class_map: ClassMap) -> ClipRecord:
    if record.error:
        return record
    unknown = [n for n in record.labels if n not in class_map]
    if unknown:
        return record._replace(error=f"unknown label(s) {unknown} for clip {record.clip_id} "
                                     f"({record.uri}): not in the class map",
                               error_kind="unknown_label")
    if not record.labels:
        return record._replace(error=f"no labels for clip {record.clip_id} ({record.uri})")
    return record


def reject_duplicates(records: List[ClipRecord]) -> List[ClipRecord]:
    """Marks every row that repeats an earlier row's source and window, or its clip id, as a
    `duplicate` naming both rows: written twice, a clip would count twice in training and
    evaluation, and two records with one id cannot be told apart. The first row is kept."""
    by_window, by_id, out = {}, {}, []
    for record in records:
        window = (record.uri, record.start, record.end)
        first = None if record.error else by_window.get(window) or by_id.get(record.clip_id)
        if first is not None:
            same = "source and window" if window in by_window else "clip id"
            record = record._replace(
                error_kind="duplicate",
                error=f"duplicate of row {first.row} ({first.clip_id}): same {same}, "
                      f"{record.uri} [{record.start}, {record.end}); only the first row is kept")
        elif not record.error:
            by_window[window], by_id[record.clip_id] = record, record
        out.append(record)
    return out


def _read_text(path: str, encoding: str = "utf-8") -> str:
    """The file decoded with `encoding` (a leading byte-order mark dropped). Errors are one
    line naming the file, and for undecodable bytes the line and column."""
    try:
        "".encode(encoding)
    except LookupError:
        raise LabelFileError(f"unknown encoding {encoding!r} for {path}") from None
    import tensorflow as tf  # not for --help
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.OpError as error:
        # GCS errors span lines; the message is one.
        raise LabelFileError(f"cannot read {path}: {' '.join(error.message.split())}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)
        raise LabelFileError(
            f"{path}:{line}: byte 0x{data[error.start]:02x} at column {column} is not valid "
            f"{encoding}; pass the file's encoding (e.g. --encoding latin-1)") from None
    return text[1:] if text.startswith("\ufeff") else text


def _resolve(uri: str, videos: str) -> str:
    if "://" in uri:
        return uri
    joined = os.path.join(videos, uri)   # uri itself when absolute
    # normpath would fold gs:// into gs:/; local paths are normalised so that `./a.mp4` and
    # `a.mp4` are one source.
    return joined if "://" in joined else os.path.normpath(joined)


def _number(value) -> Optional[float]:
    return None if value is None or str(value).strip() == "" else float(value)


def _bad_row(where: str, row, error: Exception) -> ClipRecord:
    return ClipRecord(clip_id=where, uri=str(row), labels=(), start=None, end=None, split=None,
                      error=f"malformed row {where}: {error}", row=where)


def parse_listing(path: str, encoding: str = "utf-8") -> List[ClipRecord]:
    """A listing of videos to classify: one path or URI per line (blank lines and `#` lines
    skipped), relative paths resolved against the listing's folder. The id of a video is
    the line as written; a video listed twice is a `duplicate` naming both lines."""
    folder = os.path.dirname(path)
    records = [ClipRecord(clip_id=line.strip(), uri=_resolve(line.strip(), folder), labels=(),
                          start=None, end=None, split=None, row=f"{path}:{n}")
               for n, line in enumerate(_read_text(path, encoding).splitlines(), 1)
               if line.strip() and not line.lstrip().startswith("#")]
    return reject_duplicates(records)


def _source_id(uri: str) -> str:
    """A relative path without its extension (`a/x` for a/x.mp4: files of one name in two
    folders stay apart), else the file name without extension."""
    stem = os.path.splitext(uri)[0]
    return stem if not ("://" in uri or os.path.isabs(uri)) else os.path.basename(stem)


def _generic_rows(path: str, videos: str, encoding: str) -> List[ClipRecord]:
    text = _read_text(path, encoding)
    if path.endswith((".jsonl", ".json")):
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((f"{path}:{n}", json.loads(line)))
                except ValueError as error:
                    items.append((f"{path}:{n}", error))
    else:
        reader = csv.DictReader(io.StringIO(text))
        items = [(f"{path}:{reader.line_num}", row) for row in reader]
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
            start, end = _number(row.get("start")), _number(row.get("end"))
            clip_id = row.get("clip_id") or window_clip_id(_source_id(uri), start, end)
            records.append(ClipRecord(
                clip_id=str(clip_id), uri=_resolve(uri, videos),
                labels=tuple(n for n in labels if n), start=start, end=end,
                split=row.get("split") or None, row=where))
        except (ValueError, TypeError, AttributeError) as error:
            records.append(_bad_row(where, row, error))
    return records


def _segment_record(ytid, start, end, labels, split, videos, template, presegmented, row):
    uri = template.format(ytid=ytid, start=int(start), end=int(end))
    return ClipRecord(clip_id=window_clip_id(ytid, start, end), uri=_resolve(uri, videos),
                      labels=tuple(labels), start=None if presegmented else start,
                      end=None if presegmented else end, split=split, row=row)


def _audioset_rows(path, class_map_path, videos, template, presegmented, encoding):
    """`YTID, start_seconds, end_seconds, "mid,mid"`; '#' lines are headers."""
    indices = list(csv.DictReader(_read_text(class_map_path, encoding).splitlines()))
    mid_to_name = {row["mid"]: row["display_name"] for row in indices}
    records = []
    lines = [(n, l) for n, l in enumerate(_read_text(path, encoding).splitlines(), 1)
             if l.strip() and not l.startswith("#")]
    for (n, _), row in zip(lines, csv.reader([l for _, l in lines], skipinitialspace=True)):
        try:
            ytid, start, end, mids = row
            names = [mid_to_name.get(m, m) for m in mids.split(",")]
            records.append(_segment_record(ytid, float(start), float(end), names, None,
                                           videos, template, presegmented, f"{path}:{n}"))
        except ValueError as error:
            records.append(_bad_row(f"{path}:{n}", row, error))
    return records


def _vggsound_rows(path, videos, template, presegmented, encoding):
    """`youtube_id,start_seconds,label,split` with no header; VGGSound clips are 10 s."""
    records = []
    for n, row in enumerate(csv.reader(_read_text(path, encoding).splitlines()), 1):
        try:
            ytid, start, label, split = row
            records.append(_segment_record(ytid, float(start), float(start) + 10.0, [label],
                                           split, videos, template, presegmented, f"{path}:{n}"))
        except ValueError as error:
            records.append(_bad_row(f"{path}:{n}", row, error))
    return records



def _epic_seconds(timestamp: str) -> float:
    """Seconds of Epic-Kitchens' `HH:MM:SS.ff` (start_timestamp, stop_timestamp)."""
    hours, minutes, seconds = timestamp.strip().split(":")
    if not (hours.isdigit() and minutes.isdigit()):
        raise ValueError(f"timestamp {timestamp!r} is not HH:MM:SS.ff")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# The columns of EPIC_100_train.csv / EPIC_100_validation.csv a record is made of.
EPIC_COLUMNS = ("narration_id", "participant_id", "video_id", "start_timestamp",
                "stop_timestamp", "verb_class", "noun_class")


def _epic_kitchens_rows(path, class_map, videos, template, presegmented, encoding):
    """EPIC_100_train.csv / EPIC_100_validation.csv: a header, then one action segment a row."""
    reader = csv.DictReader(io.StringIO(_read_text(path, encoding)))
    missing = [c for c in EPIC_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise LabelFileError(f"{path}:1: no column(s) {', '.join(missing)}: not an "
                             "Epic-Kitchens-100 action file (EPIC_100_train.csv's columns)")
    try:
        template.format(participant_id="P01", video_id="P01_01", narration_id="P01_01_0",
                        start=0, end=1)
    except (KeyError, IndexError, ValueError) as error:
        raise UserError(f"--video-template {template!r}: Epic-Kitchens templates take "
                        "{participant_id} {video_id} {narration_id} {start} {end}, not "
                        f"{error}") from None
    names = {(prefix, i): name[len(prefix):] for name, i in head_indices(class_map).items()
             for prefix in VERB_NOUN_PREFIXES if name.startswith(prefix)}
    return [_epic_kitchens_record(f"{path}:{reader.line_num}", row, names, videos, template,
                                  presegmented) for row in reader]


def _epic_kitchens_record(where, row, names, videos, template, presegmented) -> ClipRecord:
    """One action segment: id narration_id, the window [start_timestamp, stop_timestamp) of
    the participant's video, labels its verb_class and noun_class named by `names`
    ({(prefix, index in its head): key}), verb first, as the verb_noun head reads them. An
    optional `split` column (not Epic's own) is kept."""
    try:
        start = _epic_seconds(row["start_timestamp"])
        end = _epic_seconds(row["stop_timestamp"])
        if not end > start:
            raise ValueError(f"stop_timestamp {row['stop_timestamp']} is not after "
                             f"start_timestamp {row['start_timestamp']}")
        labels = tuple(prefix + names.get((prefix, int(row[column])), f"<id {row[column]}>")
                       for prefix, column in zip(VERB_NOUN_PREFIXES, ("verb_class", "noun_class")))
        fields = {k: row[k] for k in ("participant_id", "video_id", "narration_id")}
        uri = template.format(**fields, start=int(start), end=int(end))
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        return _bad_row(where, row, error)
    return ClipRecord(clip_id=row["narration_id"], uri=_resolve(uri, videos), labels=labels,
                      start=None if presegmented else start, end=None if presegmented else end,
                      split=row.get("split") or None, row=where)
