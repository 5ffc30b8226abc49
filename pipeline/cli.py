"""The `mbt` command. Each subcommand lives in its own module and is imported lazily,
so `mbt --help` stays fast and a subcommand pulls in only what it needs (TFX costs ~7 s).

A subcommand module defines `add_arguments(parser)` and `run(args) -> int`.

Errors: a user's mistake (mbt_keras.user_error.UserError, a missing or unreadable file, a
server that cannot be reached) is one line `mbt <command>: error: ...` on stderr and exit
status 2, as argparse does for a bad flag; anything else is a bug: its traceback, one line
saying so, and exit status 1. `--debug` (anywhere) or MBT_DEBUG=1 shows the traceback of a
user's mistake too.
"""
import argparse
import importlib
import os
import sys
import traceback

from mbt_keras.user_error import UserError, bad_record_line
from pipeline import log_level

DEBUG_ENV = "MBT_DEBUG"
USER_ERROR, INTERNAL_ERROR = 2, 1
# OS errors that mean the user named a path that is missing, of the wrong kind or not theirs.
PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
               FileExistsError)
# TensorFlow's counterparts (tf.io.gfile, tf.data), told by name so that no TF is imported.
TF_PATH_ERRORS = ("NotFoundError", "PermissionDeniedError")
# gRPC status codes of a server that did not answer, and of one that refused the request.
UNREACHABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")
REFUSED = ("INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "OUT_OF_RANGE")

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
    "explain": ("pipeline.explain_cli", "attention maps of videos (Attention Rollout, paper Fig. 6)"),
    "init-from-vit": ("mbt_keras.checkpoints.cli", "initialise a model from a ViT .npz"),
    "import-scenic": ("mbt_keras.checkpoints.cli", "import a released Scenic MBT checkpoint"),
    "pipeline": ("pipeline.pipeline_cli", "run / compile / submit the TFX pipeline"),
    "demo": ("pipeline.demo_cli", "the end-to-end demo that `make demo` runs"),
}


def _module(name):
    return importlib.import_module(SUBCOMMANDS[name][0])


def main(argv=None) -> int:
    """Runs `mbt ARGV`; returns the exit status (0, 1 for a bug, 2 for a user's mistake)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # --verbose and --debug are accepted anywhere (`mbt --verbose predict ...`,
    # `mbt predict ... --debug`).
    verbose, debug = "--verbose" in argv, "--debug" in argv or os.environ.get(DEBUG_ENV) == "1"
    argv = [a for a in argv if a not in ("--verbose", "--debug")]
    prog, args = "mbt", None
    try:
        log_level.configure(verbose)
        parsed = _parse(argv)
        if isinstance(parsed, int):
            return parsed
        prog, run, args = parsed
        return int(run(args) or 0)
    except Exception as error:  # pylint: disable=broad-except
        return _report(error, prog, args, debug)


def _parse(argv):
    """(prog, run, args) of the command line, or the exit status where parsing ends it
    (help, or argparse's own usage error, exit status 2)."""
    parser = argparse.ArgumentParser(
        prog="mbt", description=__doc__.splitlines()[0],
        epilog=f"--verbose (anywhere) or {log_level.ENV}=INFO shows third-party warnings and "
               f"TensorFlow logs, hidden by default; --debug (anywhere) or {DEBUG_ENV}=1 "
               "shows the traceback of an error")
    parser.add_argument("--verbose", action="store_true", help="see below")
    parser.add_argument("--debug", action="store_true", help="see below")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    try:
        # Parse the command first; only its module is imported to build the full parser.
        known, _ = parser.parse_known_args(argv[:1])
        if not known.command:
            parser.print_help()
            return USER_ERROR
        module = _module(known.command)
        cmd_parser = argparse.ArgumentParser(prog=f"mbt {known.command}",
                                             description=SUBCOMMANDS[known.command][1])
        add = (getattr(module, f"add_{known.command.replace('-', '_')}_arguments", None)
               or module.add_arguments)
        add(cmd_parser)
        args = cmd_parser.parse_args(argv[1:])
    except SystemExit as done:  # --help, or argparse's usage and one-line error
        return done.code if isinstance(done.code, int) else USER_ERROR
    args.command = known.command
    run = getattr(module, f"run_{known.command.replace('-', '_')}", getattr(module, "run", None))
    # Nested actions (`mbt pipeline run`) are part of the command's name.
    prog = " ".join(["mbt", known.command] + ([args.action] if getattr(args, "action", None)
                                               else []))
    return prog, run, args


def user_message(error: BaseException, args=None):
    """The one line that tells the user what to fix, or None when `error` is a bug."""
    name = type(error).__name__
    if isinstance(error, UserError):
        message = str(error)
    elif isinstance(error, PATH_ERRORS):
        message = f"{error.filename}: {error.strerror}" if error.filename else str(error)
    elif name in TF_PATH_ERRORS and type(error).__module__.startswith("tensorflow"):
        message = error.message
    elif name == "InvalidArgumentError" and bad_record_line(str(error)):
        message = bad_record_line(str(error))
    elif isinstance(error, ConnectionError) or _grpc_code(error) in UNREACHABLE + REFUSED:
        server = getattr(args, "server", None) or "the server"
        code = _grpc_code(error)
        details = f"{code}: {error.details()}" if code else str(error)
        message = (f"{server} refused the request: {details}" if code in REFUSED else
                   f"server {server} cannot be reached ({details}); is a server (`mbt serve`) "
                   "running at that address?")
    else:
        return None
    return " ".join(message.splitlines())


def _grpc_code(error):
    grpc = sys.modules.get("grpc")  # only loaded by the commands that talk to a server
    if grpc is None or not isinstance(error, grpc.RpcError) or not hasattr(error, "code"):
        return None
    return error.code().name


def _report(error: Exception, prog: str, args, debug: bool) -> int:
    message = user_message(error, args)
    if message is None:
        traceback.print_exc()
        print(f"{prog}: internal error: {type(error).__name__} (the traceback above) is a bug "
              "in mbt, not a mistake in the command line; please report it with the traceback "
              "and the command (rerun with --verbose for third-party logs)", file=sys.stderr)
        return INTERNAL_ERROR
    if debug:
        traceback.print_exc()
    print(f"{prog}: error: {message}", file=sys.stderr)
    return USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
