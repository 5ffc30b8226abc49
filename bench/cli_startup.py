"""`mbt` start-up against bare Python, measured in the same run: `mbt --help`, `mbt predict
--help`, `mbt predict VIDEO --rest URL` (TensorFlow-free) and `mbt predict VIDEO --server`
(gRPC, whose protos import TensorFlow), each a fresh process, medians of interleaved runs
against one `mbt serve` serving an mbt-micro export over gRPC and REST, on
tests/data/bigbuckbunny_5s.mp4.

Start-up of a query = its wall time minus the seconds it spent decoding the window and in
its HTTP requests (JSON encoding included), both timed inside the real command: what is left
is the interpreter, the imports, argument parsing, printing and exit. Ratios are to
`python -c pass` and to `python -c "import av, numpy"` (the floor of any client that decodes
video in Python). `--before TREE` adds the older comparison: `mbt --help`, `mbt preprocess
--help` and `mbt predict --server` with another checkout's code, same interpreter, same server.

    .venv/bin/python bench/cli_startup.py [--repeats 5] [--before /work/main]
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
MBT = [sys.executable, "-m", "pipeline.cli"]

# The real `mbt ARGS...`, with the window's decoding and the REST client's requests timed
# (printed as JSON on stderr's last line).
TIMED_MBT = """
import json, sys, time
from pipeline import cli
from serving import client, rest_client
spent = dict.fromkeys(("decode", "requests"), 0.0)

def timed(owner, name, phase):
    call = getattr(owner, name)
    def timed_call(*args, **kwargs):
        began = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            spent[phase] += time.perf_counter() - began
    setattr(owner, name, timed_call)

timed(client, "read_window", "decode")
timed(rest_client.RestClient, "_call", "requests")
status = cli.main(sys.argv[1:])
print(json.dumps(spent), file=sys.stderr)
sys.exit(status)
"""

# What `mbt predict --server` does, timed by phase, in a fresh interpreter (for --before).
# `new` reads the window from the model's contract (one more Predict), as the command does.
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


def timed(command, tree: str = REPO):
    """(seconds, stderr lines, stdout) of one run of `command` with `tree`'s code."""
    began = time.perf_counter()
    result = subprocess.run(command, cwd=tree, env=_env(tree), capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{result.stderr[-2000:]}")
    return seconds, result.stderr.splitlines(), result.stdout


def rest_query(rest: str) -> dict:
    """{total, start-up, decode, requests} seconds of one `mbt predict CLIP --rest`."""
    wall, errors, _ = timed([sys.executable, "-c", TIMED_MBT, "predict", CLIP, "--rest", rest])
    spent = json.loads(errors[-1])
    return {"total": wall, "start-up": wall - sum(spent.values()), **spent}


def before_after(before: str, target: str, repeats: int):
    """The older comparison: the same commands with `before`'s code and this tree's."""
    window = ["--num-frames", "2", "--seconds", "0.96"]  # mbt-micro's own window
    runs = {
        "mbt --help": {"before": MBT + ["--help"], "after": MBT + ["--help"]},
        "mbt preprocess --help": {"before": MBT + ["preprocess", "--help"],
                                  "after": MBT + ["preprocess", "--help"]},
        "mbt predict --server (total)": {
            "before": MBT + ["predict", CLIP, "--server", target] + window,
            "after": MBT + ["predict", CLIP, "--server", target]},
    }
    trees = {"before": before, "after": REPO}
    print(f"\n{'command':34s} {'before s':>9s} {'after s':>9s} {'after/before':>12s}  "
          "stderr lines before -> after")
    for name, commands in runs.items():
        result = {}
        for side, tree in trees.items():  # interleaved repeats: both see the same load
            result[side] = [timed(commands[side], tree)[:2] for _ in range(repeats)]
        before_s = statistics.median(s for s, _ in result["before"])
        after_s = statistics.median(s for s, _ in result["after"])
        print(f"{name:34s} {before_s:9.2f} {after_s:9.2f} {after_s / before_s:12.2f}  "
              f"{len(result['before'][0][1])} -> {len(result['after'][0][1])}")
    parts = {side: [_phases(tree, target, "old" if side == "before" else "new")
                    for _ in range(repeats)] for side, tree in trees.items()}
    for phase in ("start-up", "decode", "request"):
        before_s = statistics.median(p[phase] for p in parts["before"])
        after_s = statistics.median(p[phase] for p in parts["after"])
        print(f"{'  predict ' + phase:34s} {before_s:9.2f} {after_s:9.2f} "
              f"{after_s / before_s:12.2f}")


def _phases(tree: str, target: str, kind: str) -> dict:
    wall, _, out = timed([sys.executable, "-c", PHASES, "2", "0.96", target, kind, CLIP], tree)
    parts = json.loads(out.strip().splitlines()[-1])
    parts["start-up"] = wall - sum(parts.values()) + parts.pop("imports")
    return parts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", help="also compare with this checkout's code")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tests.serving.conftest import export_micro, start_server

    base = tempfile.mkdtemp(prefix="cli_startup_")
    export_micro(os.path.join(base, "mbt", "1"), seed=1)
    server, target, _, rest = start_server(base)
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import av, numpy"': [sys.executable, "-c", "import av, numpy"],
        "mbt --help": MBT + ["--help"],
        "mbt predict --help": MBT + ["predict", "--help"],
        "mbt predict --server (total)": MBT + ["predict", CLIP, "--server", target],
    }
    try:
        seconds, queries = {name: [] for name in commands}, []
        load = os.getloadavg()[0]
        for _ in range(args.repeats):  # interleaved: every command sees the same load
            for name, command in commands.items():
                seconds[name].append(timed(command)[0])
            queries.append(rest_query(rest))
        medians = {name: statistics.median(s) for name, s in seconds.items()}
        query = {phase: statistics.median(q[phase] for q in queries) for phase in queries[0]}
        bare, av_numpy = medians["python -c pass"], medians['python -c "import av, numpy"']
        rows = {**{k: v for k, v in medians.items() if "--server" not in k},
                "mbt predict --rest (total)": query["total"],
                "  start-up": query["start-up"], "  decode": query["decode"],
                "  requests (status, contract, predict)": query["requests"],
                "mbt predict --server (total)": medians["mbt predict --server (total)"]}
        print(f"medians of {args.repeats} runs; 1-minute load average {load:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs")
        print(f"{'command':40s} {'seconds':>8s} {'/ python':>9s} {'/ av+numpy':>11s}")
        for name, value in rows.items():
            print(f"{name:40s} {value:8.3f} {value / bare:9.1f} {value / av_numpy:11.2f}")
        print(f"rest_startup_s={query['start-up']:.3f} (goal < 1.5)")
        print(f"server_over_rest_total_ratio="
              f"{medians['mbt predict --server (total)'] / query['total']:.1f}")
        if args.before:
            before_after(args.before, target, args.repeats)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
