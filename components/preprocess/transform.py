"""`ClipsToExamples`: the one Beam PTransform from ClipRecords to SequenceExamples;
`SplitToTFRecords`, which runs it for one output split and writes everything that split makes;
`LabelFileToTFRecords`, the whole job from a label file the workers read.

Used by the TFX ExampleGen executor and by `mbt preprocess`. A label-file row longer than
`segment_seconds` (default 60) becomes consecutive segments, each an item of its own with
the row's labels, so that no record holds more than a minute of video by default and one film
is decoded by many workers (components/preprocess/segments.py). Every item ends in exactly one
of two outputs, so read = written + rejected: `examples` (serialized tf.train.SequenceExample)
and `dead_letters` (dicts with the item and a reason naming its label-file row); errors of
the storage propagate instead, for the runner to retry (retryable.py). Beam counters in the
`mbt_preprocess` namespace count read / written / rejected and rejected_<kind>, and
rows_segmented. The accounting (`AccountedFn`, `WriteOutcome`, `read_outcome`) is shared with
batch inference (components/batch_inference.py).

Memory per item is bounded whatever the video's length: the decoder hands over one second of
frames at a time, each second goes into the record as JPEGs before the next is decoded, and a
record's JPEG frames are capped at MAX_RECORD_BYTES (past it the item is a `too_long` dead
letter naming the flag that cuts it). docs/data_format.md has the figures.
"""
import contextlib
import json
import os
import re
from typing import Callable, Dict, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.metrics import Metrics

from components.preprocess.clip_decoder import ClipError, OpenedClip
from components.preprocess.gzip_tfrecords import WriteGzipTFRecords
from components.preprocess.label_files import (ClipRecord, LabelSource, head_indices,
                                              label_rows)
from components.preprocess.read_labels import ReadRows
from components.preprocess.retryable import is_retryable
from components.preprocess.segments import (DEFAULT_SEGMENT_SECONDS, segment_clip_id,
                                            segment_windows)
from components.preprocess.sequence_example import RecordTooLarge, chunks_to_record
from components.preprocess.splits import assign_split
from mbt_keras import contract

EXAMPLES = "examples"
DEAD_LETTERS = "dead_letters"
ITEMS = "items"  # what the decoding step reads: the rows, cut into segments
ROWS = "rows"    # the label file's rows (of one split)
METRICS_NAMESPACE = "mbt_preprocess"
# Under the output folder (mbt preprocess) or the Examples artifact (ExampleGen).
DEAD_LETTERS_DIR = "DeadLetters"
# Record files are `Split-<name>/<RECORDS_FILE_NAME>-SSSSS-of-NNNNN[.gz]`, as TFX's ExampleGen
# names them (write_split.DEFAULT_TF_RECORD_FILE_NAME).
RECORDS_FILE_NAME = "data_tfrecord"
SPLIT_FOLDER = "Split-{}"  # TFX's split folder name (artifact_utils.get_split_uri)
# `<DEAD_LETTERS_DIR>/counts-<split>.json` (WriteOutcome).
COUNTS_FILE = "counts-{}.json"
CLASS_MAP_FILE = "class_map.csv"  # `mbt preprocess` writes it in its --out, beside the splits
# Uncompressed by default: deflate saves 1% on JPEG-heavy records and reading them back costs
# 6x the JPEG decoding a training example needs (docs/benchmarks.md, bench/input_pipeline.py).
COMPRESSIONS = contract.RECORD_COMPRESSIONS
# The decode_clip options ClipsToExamples takes (the sample rate is always the log-mel's).
DECODE_OPTIONS = ("fps", "short_side", "missing_audio", "min_duration", "decoder_threads",
                  "max_damaged_fraction")
# Cap on one record's JPEG frames: a record is built, serialized and written in memory (about
# twice its size at the peak) and protobuf refuses messages over 2 GiB.
MAX_RECORD_BYTES = 512 * 2**20
# The decoder hands the record builder this much video at a time (the raw frames in memory).
RECORD_CHUNK_SECONDS = 1.0


def dead_letter(record: ClipRecord, kind: str, reason: str) -> dict:
    """The dead-letter record: the item as read, the failure kind and a reason naming it."""
    return {"item": record._asdict(), "kind": kind, "reason": reason}


def dead_letter_to_json(letter: dict) -> str:
    return json.dumps(letter, sort_keys=True)


def where(record: ClipRecord) -> str:
    """How messages name an item: its label-file row and clip id (`labels.csv:7 (c7)`), so
    that several windows of one video can be told apart."""
    if not record.row or record.row == record.clip_id:
        return record.clip_id
    return f"{record.row} ({record.clip_id})"


class AccountedFn(beam.DoFn):
    """Base DoFn of the jobs that account for every ClipRecord (preprocessing, batch
    inference): `_convert(record)` yields its outputs, or raises ClipError (a dead letter of
    that kind), an error of the storage or runtime (retryable.is_retryable: it propagates, so
    the runner retries the bundle) or anything else (`internal`: the job still does not
    crash). Outputs go out as they are yielded, so a long video's are never all held; one
    that fails partway is a dead letter saying how many went out before. Counters in
    `namespace`: read, `done`, rejected and rejected_<kind>; read = done + rejected."""

    unit = "output"  # what the dead letter of a record failing partway counts

    def __init__(self, namespace: str, done: str, progress: bool):
        self._namespace, self._done, self._progress = namespace, done, progress
        self._counters = {}

    def _count(self, name, value=1):
        if name not in self._counters:
            self._counters[name] = Metrics.counter(self._namespace, name)
        self._counters[name].inc(value)

    def process(self, record: ClipRecord):
        self._count("read")
        first, emitted = None, 0
        try:
            for output in self._convert(record):
                first, emitted = output if first is None else first, emitted + 1
                yield output
        except Exception as error:  # pylint: disable=broad-except  # never crash the job
            kind, reason = self._rejection(record, error)
            before = f" ({emitted} {self.unit}(s) written before)" if emitted else ""
            yield from self._reject(record, kind, reason + before)
            return
        self._count(self._done)
        if self._progress:
            print(f"[{self._done}] {self._describe(record, first, emitted)}", flush=True)
        yield from self._accepted(record, emitted)

    def _rejection(self, record: ClipRecord, error: Exception) -> Tuple[str, str]:
        """(kind, reason) of the dead letter `error` makes of `record`: a ClipError's kind,
        else `internal`. An error of the storage or runtime is raised again instead."""
        if isinstance(error, ClipError):
            return error.kind, f"{where(record)}: {error}"
        if is_retryable(error):
            raise error
        return "internal", (f"{where(record)} ({record.uri}): unexpected "
                            f"{type(error).__name__}: {error}")

    def _describe(self, record, first, emitted) -> str:  # pylint: disable=unused-argument
        """The progress line of an accepted record, from its first output and their number."""
        return where(record)

    def _accepted(self, record, emitted):  # pylint: disable=unused-argument
        """Further outputs once `record` is accepted whole (none by default)."""
        return ()

    def _reject(self, record, kind, reason):
        self._count("rejected")
        self._count(f"rejected_{kind}")
        if self._progress:
            print(f"[rejected] {reason}", flush=True)
        yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(record, kind, reason))

    def _convert(self, record: ClipRecord):
        raise NotImplementedError


class _ClipToExampleFn(AccountedFn):

    def __init__(self, class_map, decode_options, include_waveform, progress, max_record_bytes):
        super().__init__(METRICS_NAMESPACE, "written", progress)
        self._class_map = class_map
        self._decode_options = decode_options
        self._include_waveform = include_waveform
        self._max_record_bytes = max_record_bytes

    def _convert(self, record: ClipRecord):
        if record.error:
            raise ClipError(record.error_kind or "bad_row", record.error)
        with opened_video(record.uri) as source, OpenedClip(source, record.uri) as clip:
            chunks = clip.decode_chunks(chunk_seconds=RECORD_CHUNK_SECONDS, start=record.start,
                                        end=record.end, sample_rate=contract.SAMPLE_RATE,
                                        **self._decode_options)
            try:
                built = chunks_to_record(
                    chunks, clip_id=record.clip_id, uri=record.uri, labels=record.labels,
                    class_map=self._class_map, include_waveform=self._include_waveform,
                    max_frame_bytes=self._max_record_bytes)
            except RecordTooLarge as error:
                end = record.end if record.end is not None else clip.info().duration
                length = f"{end - (record.start or 0.0):.1f} s" if end else "of unknown length"
                raise ClipError("too_long", f"row {length} too long for one record: {error}; "
                                "--segment-seconds S (e.g. the default "
                                f"{DEFAULT_SEGMENT_SECONDS:.0f}) cuts it into records of S "
                                "seconds") from None
        self._count("skipped_packets", built.skipped_packets)
        return [built.serialized]


@contextlib.contextmanager
def opened_video(uri: str):
    """The video to decode: local paths go to FFmpeg by name; other filesystems (gs://) are
    read through tf.io.gfile as a seekable file object, so FFmpeg reads only the bytes it
    needs (a segment of a film is not the whole film in memory)."""
    if "://" not in uri or uri.startswith("file://"):
        yield uri.replace("file://", "", 1)
        return
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not tf.io.gfile.exists(uri):
        raise ClipError("missing_file", f"missing file: {uri} does not exist")
    with tf.io.gfile.GFile(uri, "rb") as f:
        yield f


class _SegmentFn(beam.DoFn):
    """A row longer than `seconds` -> its segments (`segment_windows`), each with the row's
    labels and a `segment_clip_id`; other rows pass as they are. The length of a row without
    an end is the container's (a header read). A row whose file cannot be probed passes on
    whole: decoding it gives the dead letter with the reason. The last segment of a row
    without an end keeps no end, so it runs to the video's last frame."""

    def __init__(self, seconds: float):
        self._seconds = seconds
        self._rows = Metrics.counter(METRICS_NAMESPACE, "rows_segmented")

    def process(self, record: ClipRecord):
        if not self._seconds or record.error:
            yield record
            return
        end = record.end if record.end is not None else self._probed_duration(record)
        windows = segment_windows(record.start or 0.0, end, self._seconds) if end else []
        if len(windows) < 2:
            yield record
            return
        self._rows.inc()
        for first, last in windows:
            yield record._replace(
                clip_id=segment_clip_id(record.clip_id, first, last), start=first,
                end=None if record.end is None and last == end else last)

    @staticmethod
    def _probed_duration(record) -> Optional[float]:
        try:
            with opened_video(record.uri) as source, OpenedClip(source, record.uri) as clip:
                return clip.info().duration
        except Exception as error:  # pylint: disable=broad-except  # decoding reports it
            if is_retryable(error):  # else a transient failure would leave the row uncut
                raise
            return None


class ClipsToExamples(beam.PTransform):
    """PCollection[ClipRecord] -> {ITEMS: the records decoded (rows cut into segments),
    EXAMPLES: serialized tf.train.SequenceExamples, DEAD_LETTERS: dead letters}.

    `decode_options` are passed to the decoder (fps, short_side, missing_audio, min_duration,
    decoder_threads, max_damaged_fraction); the `skipped_packets` counter sums the damaged
    packets skipped in written clips. The sample rate is always contract.SAMPLE_RATE, the
    log-mel's rate. `decoder_threads` defaults to 1: runners process several clips at once
    (worker threads and processes), and one single-threaded decoder per clip costs less CPU
    in total than FFmpeg's frame threads (bench/preprocess.py). `segment_seconds` (0: rows
    whole) and `max_record_bytes`: the module docstring.
    """

    def __init__(self, class_map: Dict[str, int], *, include_waveform: bool = False,
                 progress: bool = False, segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
                 max_record_bytes: int = MAX_RECORD_BYTES, **decode_options):
        super().__init__()
        unknown = set(decode_options) - set(DECODE_OPTIONS)
        if unknown:
            raise ValueError(f"unknown decode option(s) {sorted(unknown)}")
        if segment_seconds < 0:
            raise ValueError(f"segment_seconds={segment_seconds}: expected >= 0 (0: whole rows)")
        self._segment = _SegmentFn(segment_seconds)
        # Records index each label within its head (verb+noun: [verb, noun]).
        self._fn = _ClipToExampleFn(head_indices(class_map),
                                    {"decoder_threads": 1, **decode_options},
                                    include_waveform, progress, max_record_bytes)

    def expand(self, records):
        # Segments of one film spread over the workers (the rows were spread already).
        items = (records | "Segment" >> beam.ParDo(self._segment)
                 | "SpreadSegments" >> beam.Reshuffle())
        outputs = items | "DecodeAndEncode" >> beam.ParDo(self._fn).with_outputs(
            DEAD_LETTERS, main=EXAMPLES)
        return {ITEMS: items, EXAMPLES: outputs[EXAMPLES], DEAD_LETTERS: outputs[DEAD_LETTERS]}


class WriteOutcome(beam.PTransform):
    """Writes one split's dead letters (JSON lines) and a counts file next to them.

    Input: {ROWS: the rows read, EXAMPLES: examples, DEAD_LETTERS: dead letters} and, where
    rows become several items (segments), ITEMS: what was decoded; e.g. ClipsToExamples'
    outputs with the rows. The counts file `<directory>/counts-<split>.json` holds rows (of
    the label file), read (items: the rows when no ITEMS are given) / written / rejected and
    rejected per kind, so the numbers survive on any runner and can be checked later.
    """

    def __init__(self, directory: str, split: str):
        super().__init__()
        self._directory, self._split = directory, split

    def expand(self, outputs):
        examples, dead = outputs[EXAMPLES], outputs[DEAD_LETTERS]
        _ = (dead | "DeadLettersToJson" >> beam.Map(dead_letter_to_json)
             | "WriteDeadLetters" >> beam.io.WriteToText(
                 os.path.join(self._directory, f"dead_letters-{self._split}"),
                 file_name_suffix=".jsonl"))
        written = examples | "CountWritten" >> beam.combiners.Count.Globally()
        kinds = (dead | "Kinds" >> beam.Map(lambda letter: letter["kind"])
                 | "CountKinds" >> beam.combiners.Count.PerElement())
        rows = outputs[ROWS] | "CountRows" >> beam.combiners.Count.Globally()
        read = (outputs[ITEMS] | "CountRead" >> beam.combiners.Count.Globally()
                if ITEMS in outputs else rows)
        return (examples.pipeline | "Once" >> beam.Create([None])
                | "Counts" >> beam.Map(
                    lambda _, n, r, w, k: json.dumps({"rows": n, "read": r, "written": w,
                                                      "rejected": sum(k.values()),
                                                      "rejected_by_kind": dict(sorted(k.items()))}),
                    n=beam.pvalue.AsSingleton(rows), r=beam.pvalue.AsSingleton(read),
                    w=beam.pvalue.AsSingleton(written), k=beam.pvalue.AsDict(kinds))
                | "WriteCounts" >> beam.io.WriteToText(
                    os.path.join(self._directory, COUNTS_FILE.format(self._split)),
                    shard_name_template=""))


def write_tfrecords(file_prefix: str, compression: str) -> beam.PTransform:
    """PCollection[bytes] -> `<file_prefix>-SSSSS-of-NNNNN`, plain TFRecords that DMVR and
    Scenic read as `<file_prefix>@N`, or with `compression="gzip"` the same names + `.gz`
    (WriteGzipTFRecords). Readers tell them apart by the suffix, as TFX's do."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression={compression!r}: expected one of {COMPRESSIONS}")
    if compression == "gzip":
        return WriteGzipTFRecords(file_prefix)
    return beam.io.WriteToTFRecord(file_prefix, compression_type=CompressionTypes.UNCOMPRESSED)


class SplitToTFRecords(beam.PTransform):
    """One output split: its ClipRecords (a PCollection) -> ClipsToExamples -> SequenceExample
    TFRecords `<file_prefix>-SSSSS-of-NNNNN` (write_tfrecords), and its dead letters and
    counts in `dead_letter_dir` (WriteOutcome). `options` go to ClipsToExamples."""

    def __init__(self, class_map: Dict[str, int], split: str, file_prefix: str,
                 dead_letter_dir: str, *, compression: str = "none", **options):
        super().__init__()
        self._split, self._dead_letter_dir = split, dead_letter_dir
        self._write = write_tfrecords(file_prefix, compression)
        self._to_examples = ClipsToExamples(class_map, **options)

    def expand(self, records):
        outputs = records | "ClipsToExamples" >> self._to_examples
        _ = outputs[EXAMPLES] | "Write" >> self._write
        return {**outputs, ROWS: records} | "Outcome" >> WriteOutcome(self._dead_letter_dir,
                                                                     self._split)


class LabelFileToTFRecords(beam.PTransform):
    """The preprocessing job (ClipExampleGen's and `mbt preprocess`'), applied to the
    pipeline: the label file's rows read by the workers (read_labels.ReadRows: the job graph
    does not grow with the rows), labels checked against `class_map`, duplicates marked,
    each row given its split (splits.assign_split over `hash_buckets`' names), and each split
    written by SplitToTFRecords to `file_prefix(split)`, its dead letters and counts in
    `dead_letter_dir`. `options` go to SplitToTFRecords."""

    def __init__(self, source: LabelSource, class_map: Dict[str, int],
                 hash_buckets: Dict[str, int], file_prefix: Callable[[str], str],
                 dead_letter_dir: str, **options):
        super().__init__()
        self._source, self._class_map = source, dict(class_map)
        self._buckets = dict(hash_buckets)
        self._splits = {name: SplitToTFRecords(class_map, name, file_prefix(name),
                                               dead_letter_dir, **options)
                        for name in hash_buckets}

    def expand(self, pipeline):
        names = list(self._buckets)
        parts = (pipeline | "ReadLabels" >> ReadRows(label_rows, self._source, self._class_map)
                 | "AssignSplit" >> beam.Map(assign_split, self._buckets)
                 | "BySplit" >> beam.Partition(lambda record, _: names.index(record.split),
                                               len(names)))
        for name, part in zip(names, parts):
            _ = part | f"Split[{name}]" >> self._splits[name]


def read_outcome(directory: str) -> dict:
    """Sums the counts files under `directory` into rows/read/written/rejected/
    rejected_by_kind."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    total = {"rows": 0, "read": 0, "written": 0, "rejected": 0, "rejected_by_kind": {}}
    for path in sorted(tf.io.gfile.glob(os.path.join(directory, COUNTS_FILE.format("*")))):
        with tf.io.gfile.GFile(path) as f:
            counts = json.loads(f.read())
        counts.setdefault("rows", counts["read"])
        for key in ("rows", "read", "written", "rejected"):
            total[key] += counts[key]
        for kind, n in counts["rejected_by_kind"].items():
            total["rejected_by_kind"][kind] = total["rejected_by_kind"].get(kind, 0) + n
    return total


def _split_outputs(patterns) -> Optional[Dict[str, str]]:
    """{split name: the output folder holding its Split-<name>/} when the files matching
    `patterns` are every file of such split folders, else None (some other layout, or part
    of a split). Lists file names only."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from mbt_keras.input_pipeline import list_files  # pylint: disable=import-outside-toplevel
    matched = {}
    for path in list_files(patterns):
        matched.setdefault(os.path.dirname(path), set()).add(path)
    outputs = {}
    for folder, files in matched.items():
        out, name = os.path.split(folder)
        split = re.fullmatch(SPLIT_FOLDER.format("(.+)"), name)
        if not split or files != {os.path.join(folder, f) for f in tf.io.gfile.listdir(folder)}:
            return None
        outputs[split.group(1)] = out
    return outputs


def split_examples(patterns) -> Optional[int]:
    """How many examples the record files matching `patterns` hold, from the counts files of
    the job that wrote them (ExampleGen, `mbt preprocess`): `<out>/Split-<name>/*` counted in
    `<out>/DeadLetters/counts-<name>.json`, so training sizes its epoch without a pass over
    the records. None when some matching file is not in such a split folder, the counts file
    is missing, or the patterns take only part of a split's files (the count is not theirs)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    outputs = _split_outputs(patterns)
    if outputs is None:
        return None
    total = 0
    for split, out in outputs.items():
        counts = os.path.join(out, DEAD_LETTERS_DIR, COUNTS_FILE.format(split))
        if not tf.io.gfile.exists(counts):
            return None
        with tf.io.gfile.GFile(counts) as f:
            total += json.loads(f.read())["written"]
    return total


def split_class_map(patterns) -> Optional[str]:
    """The class map `mbt preprocess` wrote beside the split folders the record files matching
    `patterns` fill (`<out>/class_map.csv`), so names need no pass over the records; None
    when there is none or the files come from several outputs."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    outs = set((_split_outputs(patterns) or {}).values())
    if len(outs) != 1:
        return None
    path = os.path.join(outs.pop(), CLASS_MAP_FILE)
    return path if tf.io.gfile.exists(path) else None
