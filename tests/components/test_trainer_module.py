"""The TFX Trainer's run_fn on an Examples-artifact layout (Split-train/*, Split-eval/*, and
the counts ClipExampleGen writes in DeadLetters/)."""
import json
import os
import types

import pytest
import tensorflow as tf

from components.preprocess.transform import COUNTS_FILE, DEAD_LETTERS_DIR
from components.trainer_module import run_fn
from mbt_keras import contract
from mbt_keras.user_error import UserError
from tests.mbt_keras.tfrecord_fixtures import write_clips


def _write_counts(root, split, written):
    """The counts file as transform.WriteOutcome writes it."""
    os.makedirs(root / DEAD_LETTERS_DIR, exist_ok=True)
    (root / DEAD_LETTERS_DIR / COUNTS_FILE.format(split)).write_text(json.dumps(
        {"rows": written, "read": written, "written": written, "rejected": 0,
         "rejected_by_kind": {}}))


def _fn_args(root, counted=4, **custom):
    for split in ("train", "eval"):
        os.makedirs(root / f"Split-{split}")
        write_clips(root / f"Split-{split}" / "data-00000-of-00001.gz", 4, 4, seconds=2)
        if counted is not None:
            _write_counts(root, split, counted)
    return types.SimpleNamespace(
        train_files=[str(root / "Split-train" / "*")], eval_files=[str(root / "Split-eval" / "*")],
        custom_config={"preset": "mbt-micro", "epochs": 1, "batch_size": 4, **custom},
        serving_model_dir=str(root / "serving"), model_run_dir=str(root / "run"))


def test_run_fn_sizes_its_epoch_by_the_examplegen_counts_trains_logs_and_exports(
        tmp_path, steps_taken):
    """The train split holds 4 records but its counts file says 12: at batch 4 an epoch takes
    12 // 4 = 3 steps, where counting the records would have given 1."""
    args = _fn_args(tmp_path, counted=12)
    run_fn(args)
    assert steps_taken(os.path.join(args.model_run_dir, "checkpoints")) == 3
    loaded = tf.saved_model.load(args.serving_model_dir)
    assert {contract.SIG_SERVING, contract.SIG_EXAMPLES} <= set(loaded.signatures)
    names = (tmp_path / "serving" / "assets" / contract.CLASS_NAMES_ASSET).read_text().split()
    assert names == [f"class_{i}" for i in range(4)]
    assert any(f.startswith("events.") for f in os.listdir(args.model_run_dir))
    assert tf.train.latest_checkpoint(os.path.join(args.model_run_dir, "checkpoints"))


def test_class_map_sets_the_number_of_classes(tmp_path):
    args = _fn_args(tmp_path, class_map=["dog", "cat", "bird", "car", "train"])
    run_fn(args)
    names = (tmp_path / "serving" / "assets" / contract.CLASS_NAMES_ASSET).read_text().split()
    assert names == ["dog", "cat", "bird", "car", "train"]


def test_without_counts_or_steps_per_epoch_the_trainer_refuses_in_one_line(tmp_path):
    with pytest.raises(UserError) as refused:
        run_fn(_fn_args(tmp_path, counted=None))
    [line] = str(refused.value).splitlines()
    assert line.startswith("steps_per_epoch is 0 and the number of training examples is "
                           "unknown")
    assert not os.path.exists(tmp_path / "run" / "checkpoints")
