"""`mbt` start-up before/after: `mbt --help`, `mbt preprocess --help` and `mbt predict
--server` on a short real clip, the last broken into start-up (interpreter + imports), decode
and request. "Before" is another checkout's code (default /work/main) run with the same
interpreter against the same server (this tree's, serving an mbt-micro export).

    .venv/bin/python bench/cli_startup.py [--before /work/main] [--repeats 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = REPO  # run as a script, this file's folder would shadow the `serving` package
CLIP = os.path.join(REPO, "tests", "data", "bigbuckbunny_5s.mp4")

# What `mbt predict --server` does, timed by phase, in a fresh interpreter. `new` reads the
# window from the model's contract (one more Predict), as the command does.
PHASES = """
import json, sys, time
began = time.perf_counter()
from pipeline import cli
from serving import client
import grpc
imported = time.perf_counter()
num_frames, seconds, new = int(sys.argv[1]), float(sys.argv[2]), sys.argv[4] == "new"
inputs = client.clip_inputs(sys.argv[5], num_frames=num_frames, seconds=seconds)
decoded = time.perf_counter()
predictor = client.PredictClient(sys.argv[3], "mbt")
if new:
    from serving import model_contract
    model_contract.from_server(predictor.stub, "mbt")
predictor.predict(inputs)
answered = time.perf_counter()
print(json.dumps({"imports": imported - began, "decode": decoded - imported,
                  "request": answered - decoded}))
"""


def _env(tree: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "MBT_LOG_LEVEL", "PYTHONWARNINGS")}
    return {**env, "PYTHONPATH": tree}


def timed(command, tree: str):
    """(seconds, stderr line count) of one run of `command` with `tree`'s code."""
    began = time.perf_counter()
    result = subprocess.run(command, cwd=tree, env=_env(tree), capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{result.stderr[-2000:]}")
    return seconds, len(result.stderr.splitlines()), result.stdout


def phases(tree: str, target: str, kind: str, num_frames: int, seconds: float) -> dict:
    wall, _, out = timed([sys.executable, "-c", PHASES, str(num_frames), str(seconds), target,
                          kind, CLIP], tree)
    parts = json.loads(out.strip().splitlines()[-1])
    parts["start-up"] = wall - sum(parts.values()) + parts.pop("imports")
    return parts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="/work/main", help="checkout with the old code")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from bench.serving import start_server
    from tests.serving.conftest import export_micro

    base = tempfile.mkdtemp(prefix="cli_startup_")
    export_micro(os.path.join(base, "mbt", "1"), seed=1)
    server, target = start_server(base)
    window = ["--num-frames", "2", "--seconds", "0.96"]  # mbt-micro's own window
    mbt = [sys.executable, "-m", "pipeline.cli"]
    runs = {
        "mbt --help": {"before": mbt + ["--help"], "after": mbt + ["--help"]},
        "mbt preprocess --help": {"before": mbt + ["preprocess", "--help"],
                                  "after": mbt + ["preprocess", "--help"]},
        "mbt predict --server (total)": {
            "before": mbt + ["predict", CLIP, "--server", target] + window,
            "after": mbt + ["predict", CLIP, "--server", target]},
    }
    trees = {"before": args.before, "after": REPO}
    try:
        print(f"{'command':34s} {'before s':>9s} {'after s':>9s} {'after/before':>12s}  "
              "stderr lines before -> after")
        for name, commands in runs.items():
            result = {}
            for side, tree in trees.items():  # interleaved repeats: both see the same load
                result[side] = [timed(commands[side], tree)[:2] for _ in range(args.repeats)]
            before = statistics.median(s for s, _ in result["before"])
            after = statistics.median(s for s, _ in result["after"])
            print(f"{name:34s} {before:9.2f} {after:9.2f} {after / before:12.2f}  "
                  f"{result['before'][0][1]} -> {result['after'][0][1]}")
        parts = {side: [phases(tree, target, "old" if side == "before" else "new", 2, 0.96)
                        for _ in range(args.repeats)] for side, tree in trees.items()}
        for phase in ("start-up", "decode", "request"):
            before = statistics.median(p[phase] for p in parts["before"])
            after = statistics.median(p[phase] for p in parts["after"])
            print(f"{'  predict ' + phase:34s} {before:9.2f} {after:9.2f} {after / before:12.2f}")
        imports = {m: timed([sys.executable, "-c", f"import {m}"], REPO)[0]
                   for m in ("grpc", "tensorflow", "tensorflow_serving.apis.predict_pb2")}
        print("imports alone (s): " + ", ".join(f"{m} {s:.2f}" for m, s in imports.items()))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
