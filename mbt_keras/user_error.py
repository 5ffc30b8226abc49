"""The one error type for a user's mistake: a flag value, a file or a model that cannot be
used. Its message is one line that names the offending value or path and says how to fix
it; the `mbt` entry point (pipeline/cli.py) prints it without a traceback and exits 2, so
modules raise it and never print or exit themselves.

TensorFlow-free and dependency-free, so every layer imports it (the serving client too).
A ValueError: code that catches ValueError around a library call keeps working.
"""
import os
import re


class UserError(ValueError):
    """A value the user gave that the program cannot use; the message says what and how to
    fix it."""


# What a record the input pipeline cannot use says (input_pipeline.bad_record), and what to do.
BAD_RECORD = "bad record:"
BAD_RECORD_ADVICE = ("such a record cannot train or be evaluated: rewrite or drop it (mbt "
                     "preprocess never writes one)")


def bad_record_line(message: str):
    """The one line of an input pipeline's failed BAD_RECORD assertion inside a TensorFlow
    error message (which wraps it in graph context), or None. TensorFlow prints the
    assertion's parts as `assertion failed: [part] [part] ...`: the words, the clip id, the
    reason, any values (shown in brackets) and the advice."""
    start = message.find("[" + BAD_RECORD)
    if start < 0:
        return None
    parts = re.findall(r"\[([^\]]*)\]", message[start:].split("\n")[0])
    if len(parts) < 4:
        return None
    what, clip, reason, *values, advice = parts
    shown = "".join(f" [{v}]" for v in values)
    return f"{what} '{clip}'{reason}{shown}{advice}".replace("\\'", "'")  # TF escapes quotes


def is_local(path: str) -> bool:
    """A path of this machine's file system rather than a URI (gs://, s3://, ram://); the
    checks below leave URIs to whatever reads them."""
    return "://" not in path


def existing_file(path: str, what: str) -> str:
    """`path`, after checking a local `path` is a file; `what` names it (e.g. '--labels')."""
    if is_local(path) and not os.path.isfile(path):
        raise UserError(f"{what} {path}: " + ("is a folder, expected a file"
                                              if os.path.isdir(path) else "no such file"))
    return path


def existing_folder(path: str, what: str) -> str:
    """`path`, after checking a local `path` is a folder."""
    if is_local(path) and not os.path.isdir(path):
        raise UserError(f"{what} {path}: " + ("is a file, expected a folder"
                                              if os.path.exists(path) else "no such folder"))
    return path


def output_folder(path: str, what: str) -> str:
    """`path`, after checking a local `path` is a folder or does not exist yet."""
    if is_local(path) and os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{what} {path}: is a file, expected a folder")
    return path


def writable_parent(path: str, what: str) -> str:
    """`path`, after checking the folder a local output `path` goes into exists, so that a
    long job does not fail at its end."""
    parent = os.path.dirname(os.path.abspath(path))
    if is_local(path) and not os.path.isdir(parent):
        raise UserError(f"{what} {path}: its folder {parent} does not exist")
    return path


def in_range(value, what: str, low=None, high=None, *, above=None):
    """`value`, after checking low <= value <= high and above < value (bounds may be None)."""
    if ((low is not None and value < low) or (high is not None and value > high)
            or (above is not None and value <= above)):
        n = _number
        bounds = (f"more than {n(above)}" if above is not None and high is None
                  else f"{n(low)} to {n(high)}" if low is not None and high is not None
                  else f"at least {n(low)}" if low is not None else f"at most {n(high)}")
        raise UserError(f"{what} {n(value)}: expected {bounds}")
    return value


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)  # 25.0 as 25, 10**6 whole
