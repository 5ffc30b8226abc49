"""Input pipeline throughput vs the model's train step on the same batches.

Writes clips in the stored format (25 fps JPEG frames with a 256-pixel short side,
100 x 128 log-mel per second), then measures examples/s of
  - the training tf.data pipeline alone (parse, window, decode, crop, flip, jitter,
    SpecAugment, mixup), and
  - the train step (forward, backward, SGD update) on a batch it produced.
The pipeline must be at least 3x faster than the step (issue 4).

  python bench/input_pipeline.py [--preset mbt-small] [--batch-size 8] [--clips 16]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tensorflow as tf  # noqa: E402

from mbt_keras import input_pipeline, training  # noqa: E402
from mbt_keras.config import from_preset  # noqa: E402
from tests.mbt_keras.tfrecord_fixtures import sequence_example, write_tfrecord  # noqa: E402


def write_data(directory, clips, seconds, files=4):
    """`clips` clips of `seconds` s split over `files` GZIP TFRecords. Frames are smooth
    patterns with mild noise: ~23 KB JPEGs, the size of real 256-pixel video frames."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:340]
    base = np.stack([128 + 60 * np.sin(x / 17.0 + c) * np.cos(y / 23.0 - c) for c in range(3)], -1)
    base = (base + rng.normal(0, 6, base.shape)).clip(0, 255).astype(np.uint8)
    paths = []
    for f in range(files):
        examples = []
        for i in range(f, clips, files):
            frames = np.stack([np.roll(base, 3 * t, axis=1) for t in range(seconds * 25)])
            melspec = rng.normal(-4, 3, (seconds * 100, 128)).astype(np.float32)
            examples.append(sequence_example(frames, melspec, [i % 8], 25.0))
        paths.append(write_tfrecord(os.path.join(directory, f"part-{f}.tfrecord.gz"), examples))
    return paths


def rate(fn, batch_size, batches, warmup=2):
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(batches):
        fn()
    return batch_size * batches / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mbt-small",
                        help="the issue sets the 3x target on mbt-small")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    config = from_preset(args.preset)
    with tempfile.TemporaryDirectory() as directory:
        files = write_data(directory, args.clips, args.seconds)
        dataset = input_pipeline.train_dataset(files, config, args.batch_size)
        iterator = iter(dataset)
        pipeline_rate = rate(lambda: next(iterator), args.batch_size, args.batches)

        batch = next(iterator)
        train_config = training.TrainConfig(epochs=1, batch_size=args.batch_size)
        trainer = training.Trainer(config, train_config, os.path.join(directory, "run"), 1)
        fixed = iter(trainer.strategy.distribute_datasets_from_function(
            lambda ctx: tf.data.Dataset.from_tensors(batch).repeat()))
        step_rate = rate(lambda: float(trainer.train_step(fixed)), args.batch_size, args.batches)
    devices = ",".join(d.device_type for d in tf.config.list_logical_devices()
                       if d.device_type != "CPU") or f"CPU x{os.cpu_count()}"
    print(f"preset={args.preset} batch={args.batch_size} clips={args.seconds}s@25fps "
          f"device={devices}")
    print(f"input pipeline: {pipeline_rate:8.1f} examples/s")
    print(f"train step:     {step_rate:8.1f} examples/s")
    print(f"ratio pipeline/step: {pipeline_rate / step_rate:.1f}x (target >= 3x)")
    return 0 if pipeline_rate >= 3 * step_rate else 1


if __name__ == "__main__":
    sys.exit(main())
