"""Batch-1 latency of a gRPC Predict against our server vs the same SavedModel signature
called in-process, on the same inputs (a real clip's JPEG frames + waveform). Target: the
gRPC p50 at most 1.2x the in-process p50.

    .venv/bin/python bench/serving.py [--preset mbt-tiny] [--requests 100]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = REPO  # run as a script, this file's folder would shadow the `serving` package

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mbt_keras.config import from_preset  # noqa: E402
from mbt_keras.export import export_saved_model  # noqa: E402
from mbt_keras.model import build_model  # noqa: E402
from serving.client import PredictClient, clip_inputs  # noqa: E402

CLIP = os.path.join(REPO, "tests", "data", "bigbuckbunny_5s.mp4")


def start_server(model_base: str):
    """(process, target) of `mbt serve --builtin` on a free port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.server_cli", "--model-base", model_base, "--port", "0",
         "--builtin"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        match = re.search(r"on (127\.0\.0\.1:\d+)$", line.strip())
        if match:
            return process, match.group(1)
    raise RuntimeError("server exited before listening")


def latencies_ms(calls, requests: int, warmup: int = 5):
    """Milliseconds per call of each of `calls`, interleaved so both see the same machine load."""
    for call in calls:
        for _ in range(warmup):
            call()
    times = [[] for _ in calls]
    for _ in range(requests):
        for call, out in zip(calls, times):
            start = time.perf_counter()
            call()
            out.append((time.perf_counter() - start) * 1e3)
    return [np.array(t) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mbt-tiny")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()

    config = from_preset(args.preset)
    seconds = config.spec_frames / 100
    inputs = clip_inputs(CLIP, num_frames=config.num_frames, seconds=seconds)
    with tempfile.TemporaryDirectory() as base:
        export_dir = export_saved_model(build_model(config), config,
                                        [f"class_{i}" for i in range(sum(config.num_classes))],
                                        os.path.join(base, "mbt", "1"))
        signature = tf.saved_model.load(export_dir).signatures["serving_default"]

        def in_process():
            outputs = signature(**{k: tf.constant(v) for k, v in inputs.items()})
            return {k: v.numpy() for k, v in outputs.items()}

        process, target = start_server(base)
        try:
            client = PredictClient(target)
            local, remote = latencies_ms([in_process, lambda: client.predict(inputs)],
                                         args.requests)
            np.testing.assert_allclose(client.predict(inputs)[0]["scores"], in_process()["scores"],
                                       atol=1e-6)
            client.close()
        finally:
            process.terminate()
            process.wait(timeout=30)

    print(f"{args.preset}, batch 1, {config.num_frames} JPEG frames "
          f"+ {seconds:.2f} s of 16 kHz audio from a real clip, "
          f"{args.requests} interleaved requests each after 5 warm-up")
    print(f"{'path':<28}{'p50 (ms)':>10}{'p99 (ms)':>10}")
    for name, times in (("in-process SavedModel", local), ("gRPC Predict (our server)", remote)):
        print(f"{name:<28}{np.percentile(times, 50):>10.2f}{np.percentile(times, 99):>10.2f}")
    ratio = np.percentile(remote, 50) / np.percentile(local, 50)
    print(f"gRPC / in-process at p50: {ratio:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
