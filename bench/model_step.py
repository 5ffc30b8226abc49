"""Train-step time of MBT presets (the Trainer's step, as `mbt train` runs it: per-modality
losses, clipping, Scenic's momentum update) with and without XLA (`TrainConfig.jit_compile`),
and ViT-B/16 inference at batch 1. Ratios are against a baseline timed in the same run.

    .venv/bin/python bench/model_step.py [--batch 4] [--steps 10]
"""
import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mbt_keras import training  # noqa: E402
from mbt_keras.config import from_preset  # noqa: E402
from mbt_keras.model import build_model  # noqa: E402


def inputs(config, batch):
    rng = np.random.default_rng(0)
    shapes = {"rgb": (batch, config.num_frames, config.image_size, config.image_size, 3),
              "spec": (batch, config.spec_frames, config.mel_bins)}
    return {m: tf.constant(rng.random(shapes[m]), tf.float32) for m in config.modalities}


def seconds_per_call(fn, steps):
    fn()  # trace / compile
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        result = fn()
    np.asarray(tf.nest.flatten(result)[0])
    return (time.perf_counter() - start) / steps


def train_step_time(config, batch, steps, jit):
    x = inputs(config, batch)
    labels = tf.cast(tf.random.uniform((batch, sum(config.num_classes))) > 0.5, tf.float32)
    train_config = training.TrainConfig(batch_size=batch, clip_norm=1.0, label_smoothing=0.3,
                                        jit_compile=jit)
    with tempfile.TemporaryDirectory() as model_dir:
        trainer = training.Trainer(config, train_config, model_dir, steps)
        batches = iter(tf.data.Dataset.from_tensors((x, labels)).repeat())
        return seconds_per_call(lambda: trainer.train_steps(batches), steps)


def forward_time(config, steps, jit):
    model = build_model(config)
    x = inputs(config, 1)
    return seconds_per_call(tf.function(lambda: model(x, training=False), jit_compile=jit), steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"TF {tf.__version__}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs visible, GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    print(f"{'what':<42}{'no jit (ms)':>12}{'jit (ms)':>12}{'jit speed-up':>14}")
    for preset in ("mbt-tiny", "mbt-small"):
        config = from_preset(preset)
        eager, xla = (train_step_time(config, args.batch, args.steps, jit) for jit in (False, True))
        print(f"{preset + f' train step, batch {args.batch}':<42}"
              f"{1e3 * eager:>12.1f}{1e3 * xla:>12.1f}{eager / xla:>13.2f}x")
    vit = from_preset("mbt-b16", modalities=("rgb",), num_frames=1, num_classes=(1000,))
    eager, xla = (forward_time(vit, max(args.steps // 2, 2), jit) for jit in (False, True))
    print(f"{'ViT-B/16 forward (1 frame 224x224), batch 1':<42}"
          f"{1e3 * eager:>12.1f}{1e3 * xla:>12.1f}{eager / xla:>13.2f}x")


if __name__ == "__main__":
    main()
