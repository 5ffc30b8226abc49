"""The TFX Trainer's run_fn on an Examples-artifact layout (Split-train/*, Split-eval/*)."""
import os
import types

import tensorflow as tf

from components.trainer_module import run_fn
from mbt_keras import contract
from tests.mbt_keras.tfrecord_fixtures import write_clips


def _fn_args(root, **custom):
    for split in ("Split-train", "Split-eval"):
        os.makedirs(root / split)
        write_clips(root / split / "data-00000-of-00001.gz", 4, 4, seconds=2)
    return types.SimpleNamespace(
        train_files=[str(root / "Split-train" / "*")], eval_files=[str(root / "Split-eval" / "*")],
        custom_config={"preset": "mbt-micro", "epochs": 1, "batch_size": 4, **custom},
        serving_model_dir=str(root / "serving"), model_run_dir=str(root / "run"))


def test_run_fn_trains_logs_and_exports_with_class_names_from_the_examples(tmp_path):
    args = _fn_args(tmp_path)
    run_fn(args)
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
