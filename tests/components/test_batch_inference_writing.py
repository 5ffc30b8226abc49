"""Batch inference (`mbt infer --timeline`) sends a video's rows on as they are classified, not
once the whole video is done, so a film's length does not decide the memory a worker holds;
a video that fails partway keeps the rows before the failure and says so in its dead letter,
unless the failure is the storage's: that propagates, for the runner to retry the bundle."""
import apache_beam as beam
import pytest
import tensorflow as tf

from components.batch_inference import DEAD_LETTERS, VIDEOS, _PredictFn, folder_rows
from components.preprocess.clip_decoder import ClipError
from pipeline.infer_cli import every_window, saved_model_classifier
from tests.components.conftest import write_clip
from tests.serving.conftest import export_micro

WINDOW = {"num_frames": 2, "seconds": 0.96, "hop": 0.5}
BATCH = 2


def _predict_fn(model, windows):
    fn = _PredictFn(model, windows, saved_model_classifier, "silence", False, BATCH)
    fn.setup()
    return fn


def test_rows_leave_as_they_are_classified_and_a_failure_partway_keeps_them(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_clip(str(folder / "film.mp4"), 6.0)
    (record,) = folder_rows(str(folder))
    model = export_micro(str(tmp_path / "model"), seed=3)
    taken = []

    def counted_windows(source):
        for window in every_window(source, **WINDOW):
            taken.append(window.start)
            yield window

    outputs = _predict_fn(model, counted_windows).process(record)
    first = next(outputs)
    assert first["start"] == 0.0 and first["id"] == "film.mp4"
    assert len(taken) <= BATCH + 1  # the first batch, not the whole film
    rest = list(outputs)
    rows, done = rest[:-1], rest[-1]
    assert len(taken) == len(rows) + 1 >= 10  # 6 s in 0.96 s windows every 0.5 s
    assert [row["start"] for row in [first] + rows] == taken
    assert isinstance(done, beam.pvalue.TaggedOutput) and (done.tag, done.value) == (
        VIDEOS, "film.mp4")

    def failing_windows(source):
        for index, window in enumerate(every_window(source, **WINDOW)):
            if index == 3:
                raise ClipError("corrupt", "damaged packets at 1.5 s")
            yield window

    outputs = list(_predict_fn(model, failing_windows).process(record))
    rows, (letter,) = outputs[:-1], outputs[-1:]
    assert [row["start"] for row in rows] == taken[:BATCH]  # the batch before the failure
    assert letter.tag == DEAD_LETTERS and letter.value["kind"] == "corrupt"
    assert letter.value["reason"].endswith("damaged packets at 1.5 s (2 window(s) written "
                                           "before)")


def test_a_storage_error_partway_propagates_for_the_runner_to_retry(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_clip(str(folder / "film.mp4"), 3.0)
    (record,) = folder_rows(str(folder))
    model = export_micro(str(tmp_path / "model"), seed=3)

    def flaky_windows(source):
        for index, window in enumerate(every_window(source, **WINDOW)):
            if index == 3:
                raise tf.errors.UnavailableError(None, None, "GCS: 503 Service Unavailable")
            yield window

    with pytest.raises(tf.errors.UnavailableError, match="503"):
        list(_predict_fn(model, flaky_windows).process(record))
