"""Does the server give an unloaded version's memory back? Our server's version keeper
(`serving.model_versions`, what `mbt serve` runs) in this process: push good versions, versions
without variables and versions with a truncated saved_model.pb, one after the other, and print
the process's RSS after each has been loaded (or refused) and the one before it unloaded. Ends
with `rss_growth_mb=X`: RSS after the last push minus RSS after the first swap.

    .venv/bin/python bench/serving_memory.py [--preset mbt-micro]
"""
import argparse
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = REPO  # run as a script, this file's folder would shadow the `serving` package

from mbt_keras.config import from_preset  # noqa: E402
from serving.model_versions import ModelVersions  # noqa: E402
from tests.serving.conftest import export_micro  # noqa: E402

PUSHES = ["good"] * 4 + ["no variables"] * 3 + ["truncated graph"] * 3 + ["good"] * 3


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def push(source: str, target: str, kind: str):
    shutil.copytree(source, target)
    if kind == "no variables":
        shutil.rmtree(os.path.join(target, "variables"))
    elif kind == "truncated graph":
        with open(os.path.join(target, "saved_model.pb"), "r+b") as f:
            f.truncate(1000)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mbt-micro")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="serving_memory_")
    source = export_micro(os.path.join(base, "export"), seed=1, config=from_preset(args.preset))
    versions = ModelVersions(base, "mbt")
    print(f"{args.preset}; RSS (MB) of this process after each push")
    figures = []
    for version, kind in enumerate(["good"] + PUSHES, start=1):
        push(source, os.path.join(versions.model_dir, str(version)), kind)
        versions.poll_once()
        versions.poll_once()  # the second poll sees the same files: loads a later push
        versions.release_retired()
        status = versions.statuses("mbt", version)[0]
        figures.append(rss_mb())
        print(f"version {version:>2} {kind:<16} {status.state:<10} {status.error_code:<10}"
              f"{figures[-1]:8.0f}", flush=True)
    shutil.rmtree(base)
    print(f"rss_growth_mb={figures[-1] - figures[1]:.0f}")


if __name__ == "__main__":
    main()
