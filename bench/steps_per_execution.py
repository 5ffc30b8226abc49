"""Training steps per second of the Trainer with one step per call (the baseline, timed in
the same run) and with `TrainConfig.steps_per_execution` steps per call: the host's
dispatch, the loss it reads back and the progress it reports are paid once a call.

    .venv/bin/python bench/steps_per_execution.py [--preset mbt-micro] [--batch 2]
        [--steps 48] [--per-call 1 8]
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


def batches(config, batch):
    rng = np.random.default_rng(0)
    inputs = {"rgb": rng.random((batch, config.num_frames, config.image_size, config.image_size,
                                 3), dtype=np.float32),
              "spec": rng.random((batch, config.spec_frames, config.mel_bins), dtype=np.float32)}
    labels = (rng.random((batch, sum(config.num_classes))) < 0.3).astype(np.float32)
    return tf.data.Dataset.from_tensors((inputs, labels)).repeat()


def steps_per_second(config, batch, steps, per_call):
    """Steps per second over `steps` steps in calls of `per_call`, after one call to trace."""
    train_config = training.TrainConfig(batch_size=batch, steps_per_execution=per_call,
                                        clip_norm=1.0, augment=False, mixup_alpha=0.0, seed=0)
    with tempfile.TemporaryDirectory() as model_dir:
        trainer = training.Trainer(config, train_config, model_dir, steps)
        iterator = iter(batches(config, batch))
        trainer.train_steps(iterator, per_call)
        reported = []
        start = time.perf_counter()
        for _ in range(steps // per_call):
            # As Trainer.fit does after each call: the losses and learning rate to the host.
            result = trainer.train_steps(iterator, per_call)
            reported.append((np.mean(result["loss"].numpy()), float(result["learning_rate"][-1])))
        return steps // per_call * per_call / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mbt-micro")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--per-call", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    print(f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs visible, "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}; {args.preset}, batch "
          f"{args.batch}, {args.steps} steps")
    config = from_preset(args.preset)
    baseline = None
    print(f"{'steps per call':>15}{'steps/s':>10}{'vs 1 per call':>15}")
    for per_call in [1] + [n for n in args.per_call if n != 1]:
        rate = steps_per_second(config, args.batch, args.steps, per_call)
        baseline = baseline or rate
        print(f"{per_call:>15}{rate:>10.1f}{rate / baseline:>14.2f}x")


if __name__ == "__main__":
    main()
