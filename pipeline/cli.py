"""The `mbt` command. Each subcommand lives in its own module and is imported lazily,
so `mbt --help` stays fast and a subcommand pulls in only what it needs (TFX costs ~7 s).

A subcommand module defines `add_arguments(parser)` and `run(args) -> int`.
"""
import argparse
import importlib
import sys

from pipeline import log_level

SUBCOMMANDS = {
    # name: (module, one-line help)
    "summary": ("mbt_keras.reports", "print the model summary and parameter counts of a preset"),
    "flops": ("mbt_keras.reports", "print a GFLOPs table over fusion strategies and fusion layers"),
    "make-demo-data": ("pipeline.demo_data", "write the synthetic audio-visual demo clips"),
    "preprocess": ("pipeline.preprocess_cli", "raw clips + label file -> TFRecords (Beam)"),
    "train": ("pipeline.train_cli", "train outside TFX from TFRecords"),
    "serve": ("serving.server_cli", "serve pushed models over the TF Serving gRPC and REST APIs"),
    "predict": ("serving.predict_cli", "classify a video via a server or a SavedModel"),
    "infer": ("pipeline.infer_cli", "classify a folder or listing of videos with a SavedModel (Beam)"),
    "report": ("pipeline.report_cli", "one-screen summary of a pipeline run"),
    "init-from-vit": ("mbt_keras.checkpoints.cli", "initialise a model from a ViT .npz"),
    "import-scenic": ("mbt_keras.checkpoints.cli", "import a released Scenic MBT checkpoint"),
    "pipeline": ("pipeline.pipeline_cli", "run / compile / submit the TFX pipeline"),
    "demo": ("pipeline.demo_cli", "the end-to-end demo that `make demo` runs"),
}


def _module(name):
    return importlib.import_module(SUBCOMMANDS[name][0])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # --verbose is accepted anywhere (`mbt --verbose predict ...`, `mbt predict ... --verbose`).
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    log_level.configure(verbose)
    parser = argparse.ArgumentParser(
        prog="mbt", description=__doc__.splitlines()[0],
        epilog=f"--verbose (anywhere) or {log_level.ENV}=INFO shows third-party warnings and "
               "TensorFlow logs, hidden by default")
    parser.add_argument("--verbose", action="store_true", help="see below")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    # Parse the command first; only its module is imported to build the full parser.
    known, _ = parser.parse_known_args(argv[:1])
    if not known.command:
        parser.print_help()
        return 2
    module = _module(known.command)
    cmd_parser = argparse.ArgumentParser(prog=f"mbt {known.command}",
                                         description=SUBCOMMANDS[known.command][1])
    add = (getattr(module, f"add_{known.command.replace('-', '_')}_arguments", None)
           or module.add_arguments)
    add(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    args.command = known.command
    run = getattr(module, f"run_{known.command.replace('-', '_')}", getattr(module, "run", None))
    return int(run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
