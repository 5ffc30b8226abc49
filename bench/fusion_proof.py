"""Fusion proof on the demo data: late vs cross vs bottleneck fusion, accuracy per class group.

The demo's relation classes (`av_match` / `av_mismatch`) depend on the pair (disc colour,
tone) as an XOR, so a model that only averages per-modality logits (late fusion) is at
chance on them; fusion inside the encoder (paper 3.2-3.3) can solve them.

  python bench/fusion_proof.py [--work-dir DIR] [--clips 144] [--epochs 30]

Writes the demo clips and their TFRecords under --work-dir (kept and reused), trains the
three variants of mbt-tiny with the same recipe, and prints a markdown table.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tensorflow as tf  # noqa: E402

from components.preprocess.transform import split_examples  # noqa: E402
from mbt_keras import input_pipeline, training  # noqa: E402
from mbt_keras.config import from_preset  # noqa: E402
from pipeline.demo_data import CLASSES  # noqa: E402

GROUPS = {group: tuple(c for c in CLASSES if c.startswith(prefix))
          for group, prefix in (("visual", "visual_"), ("audio", "audio_"), ("relation", "av_"))}
VARIANTS = {"late": dict(fusion="bottleneck"), "cross": dict(fusion="cross"),
            "vanilla": dict(fusion="vanilla"), "bottleneck": dict(fusion="bottleneck")}


def make_records(work_dir, clips):
    """Demo clips -> TFRecords with the project's own commands; skipped when present."""
    records = os.path.join(work_dir, "records")
    if os.path.isdir(os.path.join(records, "Split-train")):
        return records
    demo = os.path.join(work_dir, "demo")
    mbt = [sys.executable, "-m", "pipeline.cli"]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(mbt + ["make-demo-data", demo, "--clips", str(clips)], check=True, cwd=repo)
    subprocess.run(mbt + ["preprocess", "--labels", os.path.join(demo, "labels.csv"),
                          "--videos", demo, "--class-map", os.path.join(demo, "class_map.csv"),
                          "--out", records, "--fps", "12.5", "--short-side", "72", "--quiet"],
                   check=True, cwd=repo)
    return records


def group_accuracy(model, dataset, class_names):
    """Top-1 accuracy over the eval clips of each class group (logits averaged over views)."""
    predicted, truth = [], []
    for inputs, labels in dataset:
        views = next(iter(inputs.values())).shape[1]
        flat = {k: tf.reshape(v, [-1, *v.shape[2:]]) for k, v in inputs.items()}
        logits = tf.reshape(model(flat, training=False), [-1, views, labels.shape[-1]])
        predicted.append(tf.argmax(tf.reduce_mean(logits, axis=1), axis=-1).numpy())
        truth.append(tf.argmax(labels, axis=-1).numpy())
    predicted, truth = np.concatenate(predicted), np.concatenate(truth)
    out = {}
    for group, names in GROUPS.items():
        member = np.isin(truth, [class_names.index(n) for n in names])
        out[group] = float(np.mean(predicted[member] == truth[member]))
    out["all"] = float(np.mean(predicted == truth))
    return out


def add_recipe_arguments(parser):
    """The data and training flags (bench/attention_localisation.py trains with them too)."""
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "mbt_fusion"))
    parser.add_argument("--clips", type=int, default=144)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"],
                        help="adamw: --learning-rate is then its base LR at batch 64")
    parser.add_argument("--fusion-layer", type=int, default=2,
                        help="Lf of cross and bottleneck fusion (late fusion: Lf = L = 4)")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="dropout after attention and MLP (all variants alike)")
    parser.add_argument("--drop-path", type=float, default=0.0,
                        help="stochastic depth at the last layer (all variants alike)")
    parser.add_argument("--shuffle", action="store_true",
                        help="shuffle buffer as large as the training set (training always "
                             "shuffles: files, then a buffer of TrainConfig.shuffle_buffer "
                             "clips, reshuffled each epoch)")
    parser.add_argument("--seed", type=int, default=0,
                        help="initialisation and training-data order (the clips stay the same)")
    parser.add_argument("--augment", action="store_true",
                        help="the paper's augmentations (hue jitter erases the demo's colour cue)")


def train_variant(name, args, train_files, class_names):
    """(model, config, history, seconds) of variant `name` trained from scratch with the
    recipe of `args` (add_recipe_arguments)."""
    len_train = split_examples(train_files)  # mbt preprocess's count
    fusion_layer = 4 if name == "late" else args.fusion_layer
    config = from_preset("mbt-tiny", head="singlelabel", num_classes=len(class_names),
                         fusion_layer=fusion_layer, dropout=args.dropout,
                         drop_path=args.drop_path, **VARIANTS[name])
    train_config = training.TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                        base_learning_rate=args.learning_rate,
                                        augment=args.augment, mixup_alpha=0.0, seed=args.seed,
                                        optimizer=args.optimizer,
                                        steps_per_epoch=len_train // args.batch_size,
                                        **({"shuffle_buffer": len_train}
                                           if args.shuffle else {}))
    run_dir = os.path.join(args.work_dir, "runs", name)
    shutil.rmtree(run_dir, ignore_errors=True)  # train from scratch, never resume
    began = time.time()
    tf.keras.utils.set_random_seed(args.seed)
    model, history = training.train(config, train_config, run_dir, train_files, verbose=False)
    return model, config, history, time.time() - began


def trained_variants(args):
    """Yields (name, model, config, group accuracy, seconds, eval files, class names) of each
    of `args.variants` trained on the demo records (make_records) with the recipe of `args`."""
    records = make_records(args.work_dir, args.clips)
    train_files = os.path.join(records, "Split-train", "*")
    eval_files = os.path.join(records, "Split-eval", "*")
    class_names = input_pipeline.class_names(train_files)
    for name in args.variants:
        model, config, history, seconds = train_variant(name, args, train_files, class_names)
        accuracy = group_accuracy(model, input_pipeline.eval_dataset(eval_files, config, 16),
                                  class_names)
        print(name, accuracy, f"final train loss {history[-1]['loss']:.3f}", f"{seconds:.0f} s",
              flush=True)
        yield name, model, config, accuracy, seconds, eval_files, class_names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--variants", nargs="+", default=["late", "cross", "bottleneck"],
                        choices=list(VARIANTS))
    args = parser.parse_args(argv)
    rows = [(name, accuracy, seconds)
            for name, _, _, accuracy, seconds, _, _ in trained_variants(args)]
    print("\n| fusion | visual | audio | relation (needs both) | all | train time |")
    print("|---|---|---|---|---|---|")
    for name, acc, seconds in rows:
        print(f"| {name} | {acc['visual']:.2f} | {acc['audio']:.2f} | {acc['relation']:.2f} "
              f"| {acc['all']:.2f} | {seconds:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
