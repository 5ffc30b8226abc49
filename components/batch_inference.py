"""Batch inference: videos -> one JSON line of predictions per classified window, as a Beam
job beside the preprocessing transform and with its accounting (`AccountedFn`,
`WriteOutcome`): every video read ends as predicted or as a dead letter with its reason, so
read = predicted + rejected, with Beam counters in the `mbt_infer` namespace.

Serving answers one request at a time; this runs the exported SavedModel's serving signature
in the workers themselves, loaded once per worker process (`beam.utils.shared`: its threads
share one model), so a library of a million clips scales with the runner (Dataflow, Flink,
Spark) instead of with a server.

Which windows of a video are classified, and how, are two functions handed to the transform
(`mbt infer` passes `mbt predict`'s: its window, and serving.timeline.classify with the
SavedModel's serving signature), so this module needs nothing of serving.
"""
import atexit
import functools
import gc
import json
import os
from typing import Callable, Dict, Iterable, Iterator, List

import apache_beam as beam
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.utils import shared

from components.preprocess.clip_decoder import ClipError
from components.preprocess.label_files import ClipRecord
from components.preprocess.transform import (DEAD_LETTERS, DEAD_LETTERS_DIR, EXAMPLES, ROWS,
                                             AccountedFn, WriteOutcome, opened_video)
from mbt_keras import contract

PREDICTIONS = "predictions"
VIDEOS = "videos"  # the id of each video predicted whole: what the counts call written
METRICS_NAMESPACE = "mbt_infer"
# Prediction files are `<out>/<PREDICTIONS_FILE_NAME>-SSSSS-of-NNNNN.jsonl`.
PREDICTIONS_FILE_NAME = "predictions"
# The dead letters and counts of the job: `DeadLetters/dead_letters-infer-*.jsonl`,
# `DeadLetters/counts-infer.json` (read_outcome reads them).
OUTCOME_NAME = "infer"
# The Beam counter of the files of each extension a folder listing skipped: skipped_file.txt.
SKIPPED = "skipped_file"
# A folder listing takes files with these extensions (others are skipped and reported).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".avi", ".mpg", ".mpeg",
                    ".ts", ".mts", ".m2ts", ".vob", ".mxf", ".flv", ".f4v", ".wmv", ".asf",
                    ".3gp", ".3g2", ".ogv")


# `windows(source)` -> the windows of a video to classify, in order: objects with `start`,
# `end`, `has_audio` and `inputs` (the serving signature's inputs, batch of one), e.g.
# serving.client.Window. An iterator is consumed as it comes, `batch_size` windows per call.
WindowFn = Callable[[object], Iterable]
# `classifier(saved_model)` -> `classify(windows, batch_size)`: the rows of the windows, in
# order, `batch_size` windows per model call; a row has `start`, `end`, `has_audio`, `scores`
# (every class, in the model's order) and `top_k` ([(name, score)], best first), e.g.
# serving.timeline.Row. Called once per worker process, so it pickles: a module-level
# function or a functools.partial of one.
ClassifierFn = Callable[[str], Callable[[Iterable, int], Iterable]]


def folder_rows(folder: str, all_files: bool = False) -> Iterator[ClipRecord]:
    """The video files under `folder`, recursively, as records, one at a time: run in a
    worker (read_labels.ReadRows), so a bucket of millions of videos is neither held by the
    launcher nor written into the job graph. Other files are skipped unless `all_files`,
    each counted (Beam counter `skipped_file<extension>`, skipped_counts reads them). A video's id
    is its path relative to `folder`, unique in it. Local or any tf.io.gfile filesystem."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if not tf.io.gfile.isdir(folder):
        raise FileNotFoundError(f"--videos {folder} is not a folder")
    for directory, _, files in tf.io.gfile.walk(folder):
        for name in sorted(files):
            uri = os.path.join(directory, name)
            extension = os.path.splitext(name)[1].lower()
            if name.startswith("."):
                continue
            if not all_files and extension not in VIDEO_EXTENSIONS:
                Metrics.counter(METRICS_NAMESPACE, SKIPPED + (extension or "(none)")).inc()
                continue
            yield ClipRecord(clip_id=os.path.relpath(uri, folder), uri=uri, labels=(),
                             start=None, end=None, split=None)


def skipped_counts(result) -> Dict[str, int]:
    """{extension: files} that folder_rows skipped, from a finished job's PipelineResult."""
    counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    skipped = {}
    for counter in counters["counters"]:
        name = counter.key.metric.name
        if name.startswith(SKIPPED):
            value = counter.committed if counter.committed is not None else counter.attempted
            skipped[name[len(SKIPPED):]] = skipped.get(name[len(SKIPPED):], 0) + value
    return skipped


def check_saved_model(saved_model: str) -> None:
    """Raises FileNotFoundError naming what is missing, before any worker tries to load it."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    for name in ("saved_model.pb", os.path.join("assets", contract.CLASS_NAMES_ASSET)):
        if not tf.io.gfile.exists(os.path.join(saved_model, name)):
            raise FileNotFoundError(f"--model {saved_model} is no exported MBT SavedModel: "
                                    f"it has no {name}")


class _Model:
    """`classifier(saved_model)` and the SavedModel's class names, loaded once per process."""

    def __init__(self, classifier: ClassifierFn, saved_model: str):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        self.classify = classifier(saved_model)
        with tf.io.gfile.GFile(os.path.join(saved_model, "assets",
                                            contract.CLASS_NAMES_ASSET)) as f:
            self.class_names = f.read().splitlines()
        atexit.register(self.release)

    def release(self):
        """Drops the model while the interpreter is whole. beam.utils.shared keeps the last
        model alive until exit, and TensorFlow's function destructors print tracebacks when
        they run during interpreter shutdown."""
        self.classify = None
        gc.collect()


def prediction_row(record: ClipRecord, row, class_names: List[str]) -> dict:
    """The JSON-ready row of one classified window (a ClassifierFn's row): the video, the
    window, top-k labels and all scores."""
    return {"id": record.clip_id, "path": record.uri, "row": record.row,
            "start": round(row.start, 3), "end": round(row.end, 3), "has_audio": row.has_audio,
            "top_k": [{"label": name, "score": float(score)} for name, score in row.top_k],
            "scores": {name: float(score) for name, score in zip(class_names, row.scores)}}


class _PredictFn(AccountedFn):
    unit = "window"

    def __init__(self, saved_model: str, windows: WindowFn, classifier: ClassifierFn,
                 missing_audio: str, progress: bool, batch_size: int):
        super().__init__(METRICS_NAMESPACE, "predicted", progress)
        self._saved_model, self._windows, self._missing_audio = saved_model, windows, missing_audio
        self._classifier, self._batch_size = classifier, batch_size
        self._shared = shared.Shared()
        self._model = None

    def setup(self):
        self._model = self._shared.acquire(
            functools.partial(_Model, self._classifier, self._saved_model), tag=self._saved_model)

    def _convert(self, record: ClipRecord):
        """The video's rows (prediction_row), as they are classified."""
        if record.error:
            raise ClipError(record.error_kind or "bad_row", record.error)
        rows = 0
        with opened_video(record.uri) as source:
            for row in self._model.classify(self._windows(source), self._batch_size):
                if not rows and not row.has_audio:
                    if self._missing_audio == "reject":
                        raise ClipError("no_audio", f"no audio stream in {record.uri} "
                                        "(missing_audio='reject'; 'silence' predicts it on "
                                        "silence)")
                    self._count("predicted_on_silence")
                rows += 1
                yield prediction_row(record, row, self._model.class_names)
        if not rows:
            raise ClipError("too_short", f"{record.uri} has no window to classify")

    def _describe(self, record, first, emitted) -> str:
        best = first["top_k"][0]
        silence = "" if first["has_audio"] else "  (no audio: predicted on silence)"
        return (f"{record.row or record.uri}: {best['label']} {best['score']:.3f} "
                f"({emitted} window(s)){silence}")

    def _accepted(self, record, emitted):
        self._count("windows", emitted)
        yield beam.pvalue.TaggedOutput(VIDEOS, record.clip_id)


class VideosToPredictions(beam.PTransform):
    """PCollection[ClipRecord] -> DoOutputsTuple with `predictions` (one element per
    classified window, prediction_row, in each video's order), `videos` (the id of each video
    predicted whole) and `dead_letters` (transform.dead_letter).

    `windows(source)` yields the windows to classify of a video (a path, or a file object
    for gs://), classified by `classifier(saved_model)` (ClassifierFn) `batch_size` per call;
    `missing_audio`: 'silence' (default) predicts videos without audio on silence and marks
    their rows `has_audio: false`, 'reject' makes them `no_audio` dead letters.
    """

    def __init__(self, saved_model: str, windows: WindowFn, classifier: ClassifierFn, *,
                 missing_audio: str = "silence", progress: bool = False, batch_size: int = 8):
        super().__init__()
        self._fn = _PredictFn(saved_model, windows, classifier, missing_audio, progress,
                              batch_size)

    def expand(self, records):
        return records | "Predict" >> beam.ParDo(self._fn).with_outputs(
            DEAD_LETTERS, VIDEOS, main=PREDICTIONS)


class WritePredictions(beam.PTransform):
    """The whole job, applied to the pipeline: the videos `read` (a PTransform from the
    pipeline to ClipRecords: read_labels.ReadRows of a listing, which the workers read, or a
    folder's videos created) -> VideosToPredictions -> JSON lines
    `<out>/predictions-SSSSS-of-NNNNN.jsonl`, and dead letters and counts in
    `<out>/DeadLetters/` (WriteOutcome: `written` there counts the videos predicted)."""

    def __init__(self, read: beam.PTransform, saved_model: str, out: str,
                 windows: WindowFn, classifier: ClassifierFn, **options):
        super().__init__()
        self._read, self._out = read, out
        self._to_predictions = VideosToPredictions(saved_model, windows, classifier, **options)

    def expand(self, pipeline):
        records = pipeline | "Videos" >> self._read
        outputs = records | "VideosToPredictions" >> self._to_predictions
        _ = (outputs[PREDICTIONS] | "ToJson" >> beam.Map(json.dumps)
             | "WritePredictions" >> beam.io.WriteToText(
                 os.path.join(self._out, PREDICTIONS_FILE_NAME), file_name_suffix=".jsonl"))
        return ({ROWS: records, EXAMPLES: outputs[VIDEOS], DEAD_LETTERS: outputs[DEAD_LETTERS]}
                | "Outcome" >> WriteOutcome(os.path.join(self._out, DEAD_LETTERS_DIR),
                                            OUTCOME_NAME))
