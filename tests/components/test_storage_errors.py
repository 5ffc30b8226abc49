"""A read that fails once with an error of the storage is retried by the runner, not dead-
lettered; a file that is truncated stays a dead letter (issue 32, item 5)."""
import errno
import glob
import json

import apache_beam as beam
import av
import pytest
import tensorflow as tf

from components.preprocess.clip_decoder import ClipError
from components.preprocess.label_files import ClipRecord
from components.preprocess.retryable import is_retryable
from components.preprocess.transform import (EXAMPLES, ROWS, ClipsToExamples, WriteOutcome,
                                             read_outcome)

# The classic DirectRunner retries a failed bundle (up to 4 times), as Dataflow retries a
# work item; the FnApiRunner fails the job at once.
RETRYING_RUNNER = "BundleBasedDirectRunner"


@pytest.mark.parametrize("error, retried", [
    (tf.errors.UnavailableError(None, None, "GCS: 503 Service Unavailable"), True),
    (tf.errors.DeadlineExceededError(None, None, "GCS: timed out"), True),
    (tf.errors.ResourceExhaustedError(None, None, "GCS: 429 Too Many Requests"), True),
    (ConnectionResetError(errno.ECONNRESET, "connection reset by peer"), True),
    (OSError(errno.EIO, "input/output error"), True),
    (av.error.InvalidDataError(errno.EINVAL, "Invalid data found when processing input"), False),
    (av.error.OSError(errno.EIO, "demuxer I/O error"), False),
    (ClipError("corrupt", "corrupt video file a.mp4"), False),
    (tf.errors.InvalidArgumentError(None, None, "bad shape"), False),
    (ValueError("a bug"), False),
])
def test_only_errors_of_the_storage_or_runtime_are_retried(error, retried):
    assert is_retryable(error) is retried


def test_a_read_that_fails_once_is_retried_and_written_a_truncated_file_is_a_dead_letter(
        media, tmp_path, monkeypatch):
    """Both clips are read through tf.io.gfile (ram://, as gs:// is); the first read of
    the good clip raises what GCS raises for a 503."""
    flaky, truncated = "ram://storage_errors/flaky.mp4", "ram://storage_errors/truncated.mp4"
    tf.io.gfile.copy(media["good"], flaky, overwrite=True)
    tf.io.gfile.copy(media["truncated"], truncated, overwrite=True)
    reads = {"failed": 0, "flaky": 0}

    class FlakyGFile(tf.io.gfile.GFile):
        def read(self, n=-1):
            if self.name == flaky:
                reads["flaky"] += 1
                if not reads["failed"]:
                    reads["failed"] += 1
                    raise tf.errors.UnavailableError(None, None, "503 Service Unavailable")
            return super().read(n)

    monkeypatch.setattr(tf.io.gfile, "GFile", FlakyGFile)
    records = [ClipRecord("flaky", flaky, ("dog",), None, None, "train", row="labels.csv:2"),
               ClipRecord("truncated", truncated, ("dog",), None, None, "train",
                          row="labels.csv:3")]
    with beam.Pipeline(runner=RETRYING_RUNNER) as pipeline:
        rows = pipeline | beam.Create(records)
        outputs = rows | ClipsToExamples({"dog": 0}, short_side=32, segment_seconds=0)
        _ = (outputs[EXAMPLES] | beam.Map(lambda e: tf.train.SequenceExample.FromString(e)
                                          .context.feature["clip/id"].bytes_list.value[0])
             | beam.io.WriteToText(str(tmp_path / "written")))
        _ = {**outputs, ROWS: rows} | WriteOutcome(str(tmp_path / "dead"), "train")

    assert reads["failed"] == 1 and reads["flaky"] > 1
    written = [line for path in glob.glob(str(tmp_path / "written*")) for line in open(path)]
    assert written == ["flaky\n"]
    [letter] = [json.loads(line) for path in glob.glob(str(tmp_path / "dead" / "dead_letters*"))
                for line in open(path)]
    assert (letter["item"]["clip_id"], letter["kind"]) == ("truncated", "corrupt")
    assert read_outcome(str(tmp_path / "dead")) == {
        "rows": 2, "read": 2, "written": 1, "rejected": 1, "rejected_by_kind": {"corrupt": 1}}
