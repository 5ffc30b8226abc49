"""Batch inference throughput: the Beam job (`mbt infer`: decode the window, JPEG, the
SavedModel's serving signature, JSON lines, dead letters) in videos/s against the same work
done in one loop in the same run (the baseline: load the model once, then `clip_inputs` and
the signature call per video, what `mbt predict --saved-model` does per video minus its model
load). The ratio job / loop says what Beam's parallel workers gain over a hand-written loop
on this machine; the per-video cost of the naive alternative, one `mbt predict` process per
video, is printed too (its model load is paid every time).

Videos: the real 720p clip (tests/data/bigbuckbunny_5s.mp4, 5.3 s H.264 + 5.1 AAC) copied
N times; the model: an exported mbt-tiny (the demo's preset) with random weights, on the
demo's window (4 frames, 1.92 s). The job runs on all videos and on half of them: the
difference is the time the other half took once the fixed costs were paid.

    python bench/infer.py [--videos 24] [--workers 2]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pipeline import infer_cli  # noqa: E402  pylint: disable=wrong-import-position

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
REAL_CLIP = os.path.join(REPO, "tests", "data", "bigbuckbunny_5s.mp4")
WINDOW = {"num_frames": 4, "seconds": 1.92}


def export_model(path: str) -> str:
    import keras

    from mbt_keras.config import from_preset
    from mbt_keras.export import export_saved_model
    from mbt_keras.model import build_model
    keras.utils.set_random_seed(0)
    config = from_preset("mbt-tiny", num_classes=6)  # the demo's six classes
    names = [f"class_{i}" for i in range(sum(config.num_classes))]
    return export_saved_model(build_model(config), config, names, path)


def loop(paths, model) -> float:
    """Seconds for the baseline loop (model loaded before the clock starts)."""
    import tensorflow as tf

    from serving.client import clip_inputs
    signature = tf.saved_model.load(model).signatures["serving_default"]
    inputs = clip_inputs(paths[0], **WINDOW)
    signature(**{k: tf.constant(v) for k, v in inputs.items()})  # trace / warm
    began = time.perf_counter()
    for path in paths:
        inputs = clip_inputs(path, **WINDOW)
        signature(**{k: tf.constant(v) for k, v in inputs.items()})
    return time.perf_counter() - began


def job(folder, model, out, workers) -> float:
    parser = argparse.ArgumentParser()
    infer_cli.add_arguments(parser)
    args = parser.parse_args(["--videos", folder, "--model", model, "--out", out, "--quiet",
                              "--overwrite", "--workers", str(workers),
                              "--num-frames", str(WINDOW["num_frames"]),
                              "--seconds", str(WINDOW["seconds"])])
    began = time.perf_counter()
    counts = infer_cli.infer(args)
    seconds = time.perf_counter() - began
    assert counts["written"] == counts["read"], counts
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench_infer_")
    try:
        model = export_model(os.path.join(root, "model"))
        for name, count in (("all", args.videos), ("half", args.videos // 2)):
            os.makedirs(os.path.join(root, name))
            for i in range(count):
                shutil.copy(REAL_CLIP, os.path.join(root, name, f"clip_{i:04d}.mp4"))
        paths = sorted(os.path.join(root, "all", n) for n in os.listdir(os.path.join(root, "all")))
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline.cli", "predict", paths[0],
                        "--saved-model", model, "--num-frames", str(WINDOW["num_frames"]),
                        "--seconds", str(WINDOW["seconds"])], cwd=REPO, check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": REPO})
        per_process = time.perf_counter() - began
        baseline = args.videos / loop(paths, model)
        half = job(os.path.join(root, "half"), model, os.path.join(root, "out_half"), args.workers)
        full = job(os.path.join(root, "all"), model, os.path.join(root, "out_all"), args.workers)
        marginal = (args.videos - args.videos // 2) / (full - half)
        print(f"{os.cpu_count()} cores; {args.videos} copies of the real 720p clip, mbt-tiny, "
              f"window {WINDOW}")
        print(f"one `mbt predict --saved-model` process per video: {per_process:.1f} s/video "
              f"({1 / per_process:.3f} videos/s)")
        print(f"baseline loop (model loaded once, one video at a time): {baseline:.2f} videos/s")
        print(f"mbt infer, DirectRunner x{args.workers} threads: end to end "
              f"{args.videos / full:.2f} videos/s ({full:.1f} s), ratio {args.videos / full / baseline:.2f}; "
              f"second half ({full:.1f} s - {half:.1f} s for the first) {marginal:.2f} videos/s, "
              f"ratio {marginal / baseline:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
