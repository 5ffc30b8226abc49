"""Label files users arrive with -> ClipRecords and a class map.

Formats: AudioSet segment CSVs (+ class_labels_indices.csv), VGGSound's CSV, Epic-Kitchens-100's
action segments (+ its verb and noun classes), and a generic CSV/JSONL (path or URI, labels,
optional start/end/split/clip_id/group). Files are read through
`tf.io.gfile`, so gs:// and other TensorFlow filesystems work. A row that cannot become a
clip (unknown label, malformed fields, a duplicate) is returned as a record with `error` set,
never raised: the Beam job sends it to the dead letters so that read = written + rejected.
Every record names its label-file row (`row`, "path:line"), so that rejections of several
windows of one video can be told apart, and its split `group` (the source video), so that the
windows of one video land in one split. Only a file that cannot be read at all raises
(`LabelFileError`, one line naming the file and line).

Rows are parsed one at a time (`label_rows`: a reader per format in ROW_READERS, then the
labels checked), so that the Beam job parses them in a worker
(components/preprocess/read_labels.py) and `parse_label_file` in memory, by the same code.
"""
import codecs
import csv
import io
import json
import os
import re
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from mbt_keras.user_error import UserError


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
    group: Optional[str] = None        # rows of one group share a split (split_group)


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
    Epic-Kitchens-100's `id,key,instances,category` (EPIC_100_verb_classes.csv), checked by
    `check_class_map`."""
    reader = csv.DictReader(io.StringIO(_read_text(path, encoding)))
    columns = reader.fieldnames or ()
    name_key = _name_key(columns)
    index_key = "id" if "index" not in columns else "index"
    if index_key not in columns or name_key not in columns:
        raise LabelFileError(f"{path} is no class map: expected a CSV with columns index,name "
                             "(or AudioSet's index,mid,display_name, or Epic-Kitchens' "
                             "id,key,...) and one row per class")
    return check_class_map(
        path, ((f"{path}:{reader.line_num}", row[name_key], row[index_key]) for row in reader))


def check_class_map(path: str,
                    rows: Iterable[Tuple[str, Optional[str], Optional[str]]]) -> ClassMap:
    """{name: index} of the class map `path` from its (where, name, index text) rows, where
    `where` is "file:line". The indices must be exactly 0..N-1 and the names unique, else
    LabelFileError names the first bad row: the head has N outputs and the one-hot of an
    index outside them is all zeros (input_pipeline.label_vector), so a 1-based or gappy map
    would drop a class without a word."""
    rows = list(rows)
    if not rows:
        raise LabelFileError(f"{path} has no classes: expected one row per class")
    count, class_map, row_of_index = len(rows), {}, {}
    for where, name, text in rows:
        try:
            index = int(text)
        except (TypeError, ValueError):
            index = None
        if not name:
            problem = "no class name"
        elif index is None:
            problem = f"index {text!r} of class {name!r} is not an integer"
        elif not 0 <= index < count:
            problem = f"index {index} of class {name!r} is outside 0..{count - 1}"
        elif index in row_of_index:
            problem = f"index {index} of class {name!r} repeats row {row_of_index[index]}"
        elif name in class_map:
            problem = f"class {name!r} repeats row {row_of_index[class_map[name]]}"
        else:
            class_map[name], row_of_index[index] = index, where
            continue
        raise LabelFileError(f"{where}: {problem}; a class map of {count} classes numbers them "
                             f"0..{count - 1}, each index and name once")
    return class_map


def read_class_maps(path: str, noun_path: Optional[str] = None,
                    encoding: str = "utf-8") -> ClassMap:
    """The class map of `path`, or with `noun_path` the verb+noun map (verb_noun_class_map)
    of a verb classes file and a noun classes file (Epic-Kitchens'), each checked on its own
    (check_class_map: 0..N-1 in its head)."""
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
    reader = csv.DictReader(io.StringIO(_read_text(path, encoding)))
    name_key = _name_key(reader.fieldnames)
    return {row[name_key]: row["group"] for row in reader if row.get("group")}


def _name_key(columns) -> str:
    return next((key for key in ("display_name", "key") if key in (columns or ())), "name")


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


class LabelSource(NamedTuple):
    """A label file and how to read it: all a worker needs to parse its rows (`label_rows`).

    AudioSet and VGGSound name videos by YouTube id: `video_template` formats {ytid}, {start}
    and {end} (whole seconds); Epic-Kitchens by its columns, {participant_id}, {video_id},
    {narration_id}, {start} and {end}; None: the format's (template()). `presegmented` says
    the files hold only the labelled segment, so start/end are not applied again. `encoding`
    is that of the label file and the class maps. AudioSet rows need `class_map`
    (class_labels_indices.csv: mid -> name); Epic-Kitchens rows its verb classes as
    `class_map` and its noun classes as `noun_class_map`."""
    path: str
    videos: str   # folder that relative paths and YouTube ids resolve against
    fmt: str = "generic"
    class_map: Optional[str] = None
    video_template: Optional[str] = None
    presegmented: bool = False
    encoding: str = "utf-8"
    noun_class_map: Optional[str] = None

    def template(self) -> str:
        """The video template in force: the given one, else the format's default."""
        return self.video_template or VIDEO_TEMPLATES.get(self.fmt, DEFAULT_VIDEO_TEMPLATE)


def check_source(source: LabelSource) -> None:
    """What can be checked before a job starts without reading the rows: the format, the
    class maps a format needs, and the file's first bytes (check_text), in which an
    Epic-Kitchens file's header must name its columns."""
    if source.fmt not in ROW_READERS:
        raise ValueError(f"fmt={source.fmt!r}: expected one of {FORMATS}")
    if source.fmt == "audioset" and not source.class_map:
        raise UserError(f"{source.path}: AudioSet labels need their class map, "
                        "class_labels_indices.csv (--class-map)")
    if source.noun_class_map and source.fmt != "epic-kitchens":
        raise UserError(f"{source.noun_class_map}: a noun class map (--noun-class-map) is read "
                        "with --label-format epic-kitchens only")
    head = check_text(source.path, source.encoding)
    if source.fmt == "epic-kitchens":
        _check_epic_source(source, head)


def check_text(path: str, encoding: str = "utf-8") -> str:
    """The file's first HEAD_BYTES, decoded; LabelFileError unless the file opens and they
    decode: a missing file or a wrong --encoding is one line on the launcher, not a failed job
    on the workers (a byte further on that does not decode rejects its row, _undecoded)."""
    return _read_text(path, encoding, head=HEAD_BYTES)


def source_class_map(source: LabelSource) -> ClassMap:
    """The class map of `source`: its class map file, checked, or without one every label
    the rows name, sorted (pass the map of the training data when reading other data, or
    indices will disagree). Only the names are held, not the rows."""
    if source.class_map:
        return read_class_maps(source.class_map, source.noun_class_map, source.encoding)
    names = {n for r in label_rows(source) if not r.error for n in r.labels}
    return {name: i for i, name in enumerate(sorted(names))}


def label_rows(source: LabelSource,
               class_map: Optional[ClassMap] = None) -> Iterator[ClipRecord]:
    """Every row of the label file as a ClipRecord, in file order, one at a time; with
    `class_map`, a row naming a label outside it is an `unknown_label` error. Duplicates are
    marked apart (reject_duplicates, read_labels.MarkDuplicates): they need every row."""
    check_source(source)
    text = _read_text(source.path, source.encoding, errors="surrogateescape")
    for record in ROW_READERS[source.fmt](text, source, class_map):
        record = _undecoded(record, source.encoding)
        yield record if class_map is None else _check_labels(record, class_map)


# A byte that did not decode, as errors="surrogateescape" keeps it.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _undecoded(record: ClipRecord, encoding: str) -> ClipRecord:
    """A row holding bytes that did not decode (surrogate escapes; check_text decoded the
    file's head strictly) as a bad row naming the first byte, its text with the bytes
    written as escapes: one such row past the head fails no job and loses no other row."""
    fields = (record.clip_id, record.uri, *record.labels, record.split or "",
              record.group or "", record.error or "")
    bad = next(filter(None, map(_ESCAPED_BYTE.search, fields)), None)
    if bad is None:
        return record

    def escaped(text):
        return text and text.encode(encoding, "surrogateescape").decode(encoding,
                                                                         "backslashreplace")
    return record._replace(
        clip_id=escaped(record.clip_id), uri=escaped(record.uri),
        labels=tuple(map(escaped, record.labels)), split=escaped(record.split),
        group=escaped(record.group),
        error=escaped(record.error) or f"byte 0x{ord(bad.group()) - 0xdc00:02x} is not valid "
        f"{encoding}; pass the file's encoding (e.g. --encoding latin-1)")


def parse_label_file(path: str, videos: str, fmt: str = "generic",
                     class_map_path: Optional[str] = None,
                     video_template: Optional[str] = None,
                     presegmented: bool = False,
                     encoding: str = "utf-8",
                     noun_class_map_path: Optional[str] = None,
                     ) -> Tuple[List[ClipRecord], ClassMap]:
    """The records of a label file, duplicates marked, and its class map, in memory: for
    checks and small files (the Beam job reads the rows in a worker, read_labels.py).
    Arguments: LabelSource's."""
    source = LabelSource(path, videos, fmt, class_map_path, video_template, presegmented,
                         encoding, noun_class_map_path)
    class_map = source_class_map(source)
    return reject_duplicates(label_rows(source, class_map)), class_map


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


def _window_key(record: ClipRecord) -> str:
    return json.dumps([record.uri, record.start, record.end])


def _id_key(record: ClipRecord) -> str:
    return record.clip_id


# What makes two rows one clip, checked in this order (the window first, so a row that
# repeats another's window is named for that even when its id, derived from the window,
# repeats too): written twice, a clip would count twice in training and evaluation, and two
# records with one id cannot be told apart.
DUPLICATE_KEYS: Tuple[Tuple[Callable[[ClipRecord], str], str], ...] = (
    (_window_key, "source and window"), (_id_key, "clip id"))


def row_position(record: ClipRecord) -> Tuple[str, int]:
    """(file, line) of the record's row, for "the first row" of a file whatever order the
    rows arrive in."""
    path, _, line = (record.row or "").rpartition(":")
    return (path, int(line)) if line.isdigit() else (record.row or "", 0)


def mark_duplicates(group: List[ClipRecord], same: str) -> List[ClipRecord]:
    """The rows of one DUPLICATE_KEYS key (`same` names it), in the order given: the first
    row of the file kept, every other a `duplicate` naming it."""
    first = min(group, key=row_position)
    return [record if record is first else record._replace(
        error_kind="duplicate",
        error=f"duplicate of row {first.row} ({first.clip_id}): same {same}, "
              f"{record.uri} [{record.start}, {record.end}); only the first row is kept")
            for record in group]


def reject_duplicates(records: Iterable[ClipRecord]) -> List[ClipRecord]:
    """`records` with every row that repeats an earlier row's clip (DUPLICATE_KEYS) marked
    as a `duplicate` naming that row; rows rejected already take no part."""
    out = list(records)
    for key, same in DUPLICATE_KEYS:
        groups: Dict[str, List[int]] = {}
        for i, record in enumerate(out):
            if not record.error:
                groups.setdefault(key(record), []).append(i)
        for indices in groups.values():
            if len(indices) > 1:
                for i, record in zip(indices, mark_duplicates([out[i] for i in indices], same)):
                    out[i] = record
    return out


# How much of a file `check_source` decodes before a job starts.
HEAD_BYTES = 1 << 16


def _read_text(path: str, encoding: str = "utf-8", head: Optional[int] = None,
               errors: str = "strict") -> str:
    """The file decoded with `encoding` (a leading byte-order mark dropped), or only its first
    `head` bytes; `errors` as for bytes.decode. Errors are one line naming the file, and for
    undecodable bytes the line and column."""
    try:
        "".encode(encoding)
    except LookupError:
        raise LabelFileError(f"unknown encoding {encoding!r} for {path}") from None
    import tensorflow as tf  # not for --help
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read() if head is None else f.read(head)
    except tf.errors.OpError as error:
        # GCS errors span lines; the message is one.
        raise LabelFileError(f"cannot read {path}: {' '.join(error.message.split())}") from None
    try:
        # A head may end inside a character: only a complete file must decode to its end.
        text = codecs.getincrementaldecoder(encoding)(errors).decode(
            data, final=head is None or len(data) < head)
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


def _lines(text: str) -> Iterator[Tuple[int, str]]:
    """(line number, line without its end) of `text`, one at a time."""
    for n, line in enumerate(io.StringIO(text, newline=None), 1):
        yield n, line.rstrip("\n")


def listing_rows(path: str, encoding: str = "utf-8") -> Iterator[ClipRecord]:
    """A listing of videos to classify: one path or URI per line (blank lines and `#` lines
    skipped), relative paths resolved against the listing's folder. The id of a video is
    the line as written; a video listed twice is a `duplicate` naming both lines once
    read_labels.ReadRows marks them."""
    folder = os.path.dirname(path)
    check_text(path, encoding)
    for n, line in _lines(_read_text(path, encoding, errors="surrogateescape")):
        if line.strip() and not line.lstrip().startswith("#"):
            yield _undecoded(ClipRecord(
                clip_id=line.strip(), uri=_resolve(line.strip(), folder), labels=(), start=None,
                end=None, split=None, row=f"{path}:{n}"), encoding)


def _source_id(uri: str) -> str:
    """A relative path without its extension (`a/x` for a/x.mp4: files of one name in two
    folders stay apart), else the file name without extension."""
    stem = os.path.splitext(uri)[0]
    return stem if not ("://" in uri or os.path.isabs(uri)) else os.path.basename(stem)


def _generic_rows(text: str, source: LabelSource,
                  class_map: Optional[ClassMap] = None) -> Iterator[ClipRecord]:
    """CSV with a header, or JSON lines: path or uri, labels, optional start, end, split,
    clip_id and group (rows of one group share a split; default: the source video)."""
    if source.path.endswith((".jsonl", ".json")):
        for n, line in _lines(text):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as error:
                    row = error
                yield _generic_record(f"{source.path}:{n}", row, source.videos)
    else:
        reader = csv.DictReader(io.StringIO(text))
        for row in reader:
            yield _generic_record(f"{source.path}:{reader.line_num}", row, source.videos)


def _generic_record(where: str, row, videos: str) -> ClipRecord:
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
        source_id = _source_id(uri)
        return ClipRecord(
            clip_id=str(row.get("clip_id") or window_clip_id(source_id, start, end)),
            uri=_resolve(uri, videos), labels=tuple(n for n in labels if n), start=start,
            end=end, split=row.get("split") or None, row=where,
            group=str(row.get("group") or source_id))
    except (ValueError, TypeError, AttributeError) as error:
        return _bad_row(where, row, error)


def _segment_record(ytid, start, end, labels, split, source: LabelSource, row):
    uri = source.template().format(ytid=ytid, start=int(start), end=int(end))
    return ClipRecord(clip_id=window_clip_id(ytid, start, end), uri=_resolve(uri, source.videos),
                      labels=tuple(labels), start=None if source.presegmented else start,
                      end=None if source.presegmented else end, split=split, row=row,
                      group=ytid)


def _audioset_rows(text: str, source: LabelSource,
                   class_map: Optional[ClassMap] = None) -> Iterator[ClipRecord]:
    """`YTID, start_seconds, end_seconds, "mid,mid"`; '#' lines are headers."""
    indices = csv.DictReader(io.StringIO(_read_text(source.class_map, source.encoding)))
    mid_to_name = {row["mid"]: row["display_name"] for row in indices}
    for n, line in _lines(text):
        if not line.strip() or line.startswith("#"):
            continue
        row = next(csv.reader([line], skipinitialspace=True))
        try:
            ytid, start, end, mids = row
            names = [mid_to_name.get(m, m) for m in mids.split(",")]
            yield _segment_record(ytid, float(start), float(end), names, None, source,
                                  f"{source.path}:{n}")
        except ValueError as error:
            yield _bad_row(f"{source.path}:{n}", row, error)


def _vggsound_rows(text: str, source: LabelSource,
                   class_map: Optional[ClassMap] = None) -> Iterator[ClipRecord]:
    """`youtube_id,start_seconds,label,split` with no header; VGGSound clips are 10 s."""
    for n, line in _lines(text):
        row = next(csv.reader([line]), [])
        try:
            ytid, start, label, split = row
            yield _segment_record(ytid, float(start), float(start) + 10.0, [label], split,
                                  source, f"{source.path}:{n}")
        except ValueError as error:
            yield _bad_row(f"{source.path}:{n}", row, error)


def _epic_seconds(timestamp: str) -> float:
    """Seconds of Epic-Kitchens' `HH:MM:SS.ff` (start_timestamp, stop_timestamp)."""
    hours, minutes, seconds = timestamp.strip().split(":")
    if not (hours.isdigit() and minutes.isdigit()):
        raise ValueError(f"timestamp {timestamp!r} is not HH:MM:SS.ff")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# The columns of EPIC_100_train.csv / EPIC_100_validation.csv a record is made of.
EPIC_COLUMNS = ("narration_id", "participant_id", "video_id", "start_timestamp",
                "stop_timestamp", "verb_class", "noun_class")


def _check_epic_source(source: LabelSource, head: str) -> None:
    """Both class maps given, the header (in the file's `head`) names EPIC_COLUMNS, and the
    video template takes Epic's fields: else one line before the job starts."""
    if not (source.class_map and source.noun_class_map):
        raise UserError(f"{source.path}: Epic-Kitchens labels need their verb and noun "
                        "classes, --class-map EPIC_100_verb_classes.csv --noun-class-map "
                        "EPIC_100_noun_classes.csv")
    columns = next(csv.reader(io.StringIO(head)), [])
    missing = [c for c in EPIC_COLUMNS if c not in columns]
    if missing:
        raise LabelFileError(f"{source.path}:1: no column(s) {', '.join(missing)}: not an "
                             "Epic-Kitchens-100 action file (EPIC_100_train.csv's columns)")
    template = source.template()
    try:
        template.format(participant_id="P01", video_id="P01_01", narration_id="P01_01_0",
                        start=0, end=1)
    except (KeyError, IndexError, ValueError) as error:
        raise UserError(f"--video-template {template!r}: Epic-Kitchens templates take "
                        "{participant_id} {video_id} {narration_id} {start} {end}, not "
                        f"{error}") from None


def _epic_kitchens_rows(text: str, source: LabelSource,
                        class_map: Optional[ClassMap] = None) -> Iterator[ClipRecord]:
    """EPIC_100_train.csv / EPIC_100_validation.csv: a header, then one action segment a row.
    Labels are named by the two class maps: the launcher's `class_map`, else read here (a few
    hundred rows)."""
    class_map = class_map or read_class_maps(source.class_map, source.noun_class_map,
                                             source.encoding)
    names = {(prefix, i): name[len(prefix):] for name, i in head_indices(class_map).items()
             for prefix in VERB_NOUN_PREFIXES if name.startswith(prefix)}
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        yield _epic_kitchens_record(f"{source.path}:{reader.line_num}", row, names, source)


def _epic_kitchens_record(where: str, row, names, source: LabelSource) -> ClipRecord:
    """One action segment: id narration_id, the window [start_timestamp, stop_timestamp) of
    the participant's video, labels its verb_class and noun_class named by `names`
    ({(prefix, index in its head): key}), verb first, as the verb_noun head reads them. Its
    split group is the video, so that the segments of one video share a split; an optional
    `split` column (not Epic's own) decides first."""
    try:
        start = _epic_seconds(row["start_timestamp"])
        end = _epic_seconds(row["stop_timestamp"])
        if not end > start:
            raise ValueError(f"stop_timestamp {row['stop_timestamp']} is not after "
                             f"start_timestamp {row['start_timestamp']}")
        labels = tuple(prefix + names.get((prefix, int(row[column])), f"<id {row[column]}>")
                       for prefix, column in zip(VERB_NOUN_PREFIXES, ("verb_class", "noun_class")))
        fields = {k: row[k] for k in ("participant_id", "video_id", "narration_id")}
        uri = source.template().format(**fields, start=int(start), end=int(end))
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        return _bad_row(where, row, error)
    return ClipRecord(clip_id=row["narration_id"], uri=_resolve(uri, source.videos),
                      labels=labels, start=None if source.presegmented else start,
                      end=None if source.presegmented else end,
                      split=row.get("split") or None, row=where, group=row["video_id"])


# The parser of each --label-format: (the file's text, its LabelSource, its class map or None)
# -> its rows, in order.
ROW_READERS: Dict[str, Callable[[str, LabelSource, Optional[ClassMap]],
                                Iterator[ClipRecord]]] = {
    "generic": _generic_rows, "audioset": _audioset_rows, "vggsound": _vggsound_rows,
    "epic-kitchens": _epic_kitchens_rows}
FORMATS = tuple(ROW_READERS)
