"""`mbt train` on what `mbt preprocess` wrote: the epoch's length comes from its counts file
and the export's class names from its class map, not from passes over the records, and every
output may be a tf.io.gfile URI (TensorFlow's
in-memory ram:// file system stands in for gs://; it lives in one process, so the command
runs in this one)."""
import json
import os

import pytest
import tensorflow as tf

from components.preprocess.transform import CLASS_MAP_FILE, COUNTS_FILE, DEAD_LETTERS_DIR
from mbt_keras import contract
from pipeline.cli import main
from tests.components.conftest import write_clip

CLIPS = 4
TRAIN = ["--preset", "mbt-micro", "--set", "num_classes=2", "--epochs", "1", "--batch-size",
         "2", "--quiet"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """`mbt preprocess` output of four 2 s clips: Split-train/ and DeadLetters/counts-train.json."""
    root = tmp_path_factory.mktemp("train_cli")
    rows = ["path,labels"]
    for i in range(CLIPS):
        write_clip(str(root / f"clip_{i}.mp4"), 2.0)
        rows.append(f"clip_{i}.mp4,{('dog', 'cat')[i % 2]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    out = root / "records"
    assert main(["preprocess", "--labels", str(root / "labels.csv"), "--videos", str(root),
                 "--out", str(out), "--splits", "train:1", "--fps", "5", "--short-side", "32",
                 "--workers", "1", "--quiet"]) == 0
    return out


def test_train_takes_epoch_and_class_names_from_what_preprocess_wrote_and_writes_to_uris(
        records, tmp_path, steps_taken):
    """The counts file is edited to say 6 examples where the split holds 4: the run takes
    6 // 2 = 3 steps (a counting pass would give 2), so no record was read to count; the
    export's class names are the class map's beside the split, not the records' label names.
    Its checkpoints, config.json and SavedModel go to ram:// as they would to gs://."""
    counts = records / DEAD_LETTERS_DIR / COUNTS_FILE.format("train")
    written = json.loads(counts.read_text())
    assert written["written"] == CLIPS
    os.symlink(records / "Split-train", tmp_path / "Split-train")
    (tmp_path / DEAD_LETTERS_DIR).mkdir()
    (tmp_path / DEAD_LETTERS_DIR / counts.name).write_text(json.dumps({**written, "written": 6}))
    (tmp_path / CLASS_MAP_FILE).write_text("index,name\n0,cat (map)\n1,dog (map)\n")
    model_dir, export_dir = "ram://train_cli/run", "ram://train_cli/export"
    assert main(["train", "--data", str(tmp_path / "Split-train" / "*"), "--model-dir",
                 model_dir, "--export-dir", export_dir, *TRAIN]) == 0
    assert steps_taken(f"{model_dir}/checkpoints") == 3
    with tf.io.gfile.GFile(f"{model_dir}/config.json") as f:
        assert [h["epoch"] for h in json.loads(f.read())["history"]] == [1]
    loaded = tf.saved_model.load(export_dir)
    assert contract.SIG_SERVING in loaded.signatures
    with tf.io.gfile.GFile(f"{export_dir}/assets/{contract.CLASS_NAMES_ASSET}") as f:
        assert f.read().splitlines() == ["cat (map)", "dog (map)"]


@pytest.mark.parametrize("data", ["copy/*", "Split-train/data_tfrecord-*"])
def test_train_without_a_count_or_steps_per_epoch_is_refused_in_one_line(data, records,
                                                                         tmp_path, capsys):
    """Records without their counts file (copied away), or only some of a split's files
    (the count is not theirs), give no epoch length."""
    for folder in ("copy", "Split-train"):
        (tmp_path / folder).mkdir()
        for name in os.listdir(records / "Split-train"):
            os.symlink(records / "Split-train" / name, tmp_path / folder / name)
    # A file the glob leaves out: the counts file counts it too.
    os.symlink(records / "Split-train" / name, tmp_path / "Split-train" / "more_records")
    os.symlink(records / DEAD_LETTERS_DIR, tmp_path / DEAD_LETTERS_DIR)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / data), "--model-dir", str(out), *TRAIN]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("mbt train: error: steps_per_epoch is 0 and the number of training "
                           "examples is unknown")
    assert line.endswith("(mbt train --steps-per-epoch N)")
    assert not out.exists()


@pytest.mark.parametrize("seconds, frames, labels, reason", [
    (0.5, 5, [0], "no whole second of log-mel"),
    (2.0, 0, [0], "no frame under"),
    (2.0, 10, [], "fewer than 1 label(s) for the singlelabel head"),
    (2.0, 10, [7], "a label index outside the model's classes (2) [7]; the model's num_classes"),
])
def test_a_record_the_model_cannot_use_stops_training_with_one_line_naming_it(
        seconds, frames, labels, reason, tmp_path, capsys):
    """Records written by other tools than mbt preprocess: the second of three lacks audio,
    frames or a label. Training stops at it with the clip's id and what it lacks, not an
    internal error from a gather deep inside the input pipeline."""
    from tests.mbt_keras.tfrecord_fixtures import clip_arrays, sequence_example, write_tfrecord
    examples = []
    for i in range(3):
        rgb, spec = clip_arrays(seconds if i == 1 else 2.0, 5.0, 40, 48)
        examples.append(sequence_example(rgb[:frames] if i == 1 else rgb, spec,
                                         labels if i == 1 else [i % 2], 5.0, clip_id=f"clip{i}"))
    data = write_tfrecord(tmp_path / "data.tfrecord", examples)
    assert main(["train", "--data", data, "--model-dir", str(tmp_path / "run"), *TRAIN,
                 "--batch-size", "1", "--steps-per-epoch", "3", "--set",
                 "head=singlelabel"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("mbt train: error: bad record: clip 'clip1': " + reason), line
