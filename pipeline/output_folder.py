"""A job's output folder, replaced whole: the job writes into a temporary sibling folder that
is swapped in only when it succeeds, so that no reader ever sees two runs' files side by side
(a glob over shards would silently read both) or a half-written run.

Local folders are swapped with two renames (the old folder is moved aside, the new one moved
in, then the old one deleted): a reader sees the old run or the new one, never a mix. Object
stores (gs://, through tf.io.gfile) have no folder rename: there the old outputs are deleted
first and the new files are then moved in object by object, so during the swap a reader can
see a partial new run, but never a mix of two runs.
"""
import contextlib
import os
import shutil
import uuid
from typing import Iterator

import tensorflow as tf

from mbt_keras.user_error import UserError


class OutputExistsError(UserError):
    """The output folder holds another run's files and --overwrite was not given."""


def _is_local(path: str) -> bool:
    return "://" not in path


def check_output(out: str, overwrite: bool) -> None:
    """Raises OutputExistsError, with one line saying what to do, when `out` is a file or a
    non-empty folder and `overwrite` is not set."""
    if not tf.io.gfile.exists(out):
        return
    if not tf.io.gfile.isdir(out):
        raise OutputExistsError(f"--out {out} is a file, not a folder")
    entries = sorted(tf.io.gfile.listdir(out))
    if entries and not overwrite:
        raise OutputExistsError(
            f"--out {out} is not empty ({len(entries)} entries, e.g. {entries[0].rstrip('/')}): "
            "writing beside another run would mix their files; pass --overwrite to replace "
            "it whole, or choose an empty --out")


@contextlib.contextmanager
def replaced_output(out: str, overwrite: bool) -> Iterator[str]:
    """Yields a fresh temporary folder beside `out` to write into; when the block succeeds it
    replaces `out` whole, when it fails it is deleted and `out` is left as it was."""
    out = out.rstrip("/")
    check_output(out, overwrite)
    parent, name = os.path.split(out)
    token = uuid.uuid4().hex[:8]
    # Hidden, and not prefixed by `out`: object stores list "folders" by name prefix.
    staging = os.path.join(parent, f".{name}.incomplete-{token}")
    tf.io.gfile.makedirs(staging)
    try:
        yield staging
    except BaseException:
        _remove_tree(staging)
        raise
    if _is_local(out):
        _swap_local(staging, out, os.path.join(parent, f".{name}.replaced-{token}"))
    else:
        _swap_remote(staging, out)


def _swap_local(staging: str, out: str, aside: str) -> None:
    if os.path.exists(out):
        os.rename(out, aside)
    os.rename(staging, out)
    shutil.rmtree(aside, ignore_errors=True)


def _swap_remote(staging: str, out: str) -> None:
    _remove_tree(out)
    for folder, _, files in tf.io.gfile.walk(staging):
        target = out + folder[len(staging):]
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.rename(f"{folder}/{name}", f"{target}/{name}", overwrite=True)
    _remove_tree(staging)


def _remove_tree(path: str) -> None:
    """Deletes `path` and everything under it, file by file first: object stores have no
    folders to delete, only objects that share a prefix (and some, like TensorFlow's ram://,
    refuse a recursive delete)."""
    if not tf.io.gfile.exists(path):
        return
    for folder, _, files in tf.io.gfile.walk(path):
        for name in files:
            tf.io.gfile.remove(f"{folder}/{name}")
    try:
        tf.io.gfile.rmtree(path)
    except tf.errors.NotFoundError:
        pass
