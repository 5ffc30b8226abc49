"""What the serving signature's input checks cost: the same weights exported by another
checkout's exporter (before the checks; default /work/main) and by this tree's, called
in-process on the same real clip window, interleaved. Also prints the largest score
difference (0: the checks and per-frame crop change nothing for a valid request).

    .venv/bin/python bench/serving_checks.py [--before /work/main] [--preset mbt-tiny]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = REPO  # run as a script, this file's folder would shadow the `serving` package

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mbt_keras import contract  # noqa: E402
from mbt_keras.config import from_preset  # noqa: E402
from serving.client import clip_inputs  # noqa: E402

CLIP = os.path.join(REPO, "tests", "data", "bigbuckbunny_5s.mp4")
EXPORT = """
import sys, keras
from mbt_keras.config import from_preset
from mbt_keras.export import export_saved_model
from mbt_keras.model import build_model
keras.utils.set_random_seed(3)
config = from_preset(sys.argv[1], num_classes=(4,))
export_saved_model(build_model(config), config, ["a", "b", "c", "d"], sys.argv[2])
"""


def export_with(tree: str, preset: str, export_dir: str):
    subprocess.run([sys.executable, "-c", EXPORT, preset, export_dir], cwd=tree, check=True,
                   env={**os.environ, "PYTHONPATH": tree}, capture_output=True)
    return tf.saved_model.load(export_dir).signatures[contract.SIG_SERVING]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="/work/main")
    parser.add_argument("--preset", default="mbt-tiny")
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    config = from_preset(args.preset)
    window = config.spec_frames / contract.SPEC_FRAMES_PER_SECOND
    inputs = {k: tf.constant(v) for k, v in clip_inputs(CLIP, num_frames=config.num_frames,
                                                        seconds=window).items()}
    tmp = tempfile.mkdtemp(prefix="serving_checks_")
    calls = {side: export_with(tree, args.preset, os.path.join(tmp, side))
             for side, tree in (("before", args.before), ("after", REPO))}
    times = {side: [] for side in calls}
    for call in calls.values():
        for _ in range(5):
            call(**inputs)
    for _ in range(args.requests):
        for side, call in calls.items():
            began = time.perf_counter()
            call(**inputs)
            times[side].append((time.perf_counter() - began) * 1e3)
    before, after = (np.median(times[s]) for s in ("before", "after"))
    scores = {s: c(**inputs)[contract.OUT_SCORES].numpy() for s, c in calls.items()}
    print(f"{args.preset}, batch 1, {config.num_frames} JPEG frames + {window:g} s waveform")
    print(f"p50 ms: before (no checks) {before:.2f}, after (checks) {after:.2f}, "
          f"ratio {after / before:.2f}")
    print(f"largest score difference: {np.abs(scores['before'] - scores['after']).max():.2e}")


if __name__ == "__main__":
    main()
