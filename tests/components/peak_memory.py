"""`python -m tests.components.peak_memory OUT.json ARGS [--- ARGS ...]`: runs `mbt ARGS`
once per group in this one process, each after the one before, and writes [{"status",
"maxrss"}] (the process's peak resident bytes after each) to OUT.json. The first group warms
up what every run loads (TensorFlow, Beam, the log-mel trace), so the growth of the peak
over the first is what the later runs needed on top."""
import json
import resource
import sys

from pipeline.cli import main as mbt


def main(argv):
    out, groups = argv[0], [[]]
    for arg in argv[1:]:
        if arg == "---":
            groups.append([])
        else:
            groups[-1].append(arg)
    results = []
    for args in groups:
        status = mbt(args)
        results.append({"status": status,
                        "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1:])
