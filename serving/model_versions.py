"""The versions of one model under `<base>/<model_name>/<version>/`, as TF Serving keeps them.

TF Serving's default version policy: serve the newest version that loads. A watcher thread
polls the directory, loads a newly pushed version once its files stopped changing and swaps it
in; the version it replaces is unloaded (state END) once no request holds it any more. A
version that fails to load is reported (state END with the load's error, as TF Serving's
GetModelStatus shows it) and is not tried again until its files change; the version before it
keeps serving. Every file access goes through tf.io.gfile, so the base may be on any of
TensorFlow's file systems (gs://, where the Vertex pipeline pushes).
"""
import dataclasses
import gc
import logging
import os
import threading
import weakref
from typing import Dict, List, Optional

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import status_pb2

from mbt_keras import host_memory
from serving.request_error import RequestError

LOG = logging.getLogger("mbt.serve")
# TF Serving's ModelVersionStatus.State names (get_model_status.proto).
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"
# tensorflow.error.Code, the enum of TF Serving's StatusProto.error_code
ERROR_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type


def numeric_versions(model_dir: str):
    """Version numbers of the `<model_dir>/<int>/saved_model.pb` directories, ascending."""
    if not tf.io.gfile.isdir(model_dir):
        return []
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(model_dir))  # gs:// adds a "/"
    return sorted(int(name) for name in names if name.isdigit() and
                  tf.io.gfile.exists(os.path.join(model_dir, name, "saved_model.pb")))


class LoadedVersion:
    """One loaded SavedModel version: its signature functions and SignatureDefs."""

    def __init__(self, path: str, version: int):
        self.path = path
        self.version = version
        proto = saved_model_pb2.SavedModel()  # first: a damaged graph is DATA_LOSS
        graph = os.path.join(path, "saved_model.pb")
        with tf.io.gfile.GFile(graph, "rb") as f:
            try:
                proto.ParseFromString(f.read())
            except DecodeError as exc:
                raise DecodeError(f"cannot parse {graph}: {exc}") from None
        self._saved_model = tf.saved_model.load(path)
        self.signatures = dict(self._saved_model.signatures)
        self.signature_defs = {name: sig for name, sig in proto.meta_graphs[0].signature_def.items()
                               if name in self.signatures}

    def signature(self, name: str):
        """The signature's concrete function, or a RequestError naming the ones there are."""
        if name not in self.signatures:
            raise RequestError("INVALID_ARGUMENT",
                               f"signature {name!r} not found in version {self.version}; "
                               f"available: {sorted(self.signatures)}")
        return self.signatures[name]


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """A version's state and, for one that failed to load, the error (TF Serving's
    ModelVersionStatus: state + StatusProto with a tensorflow.error.Code name)."""
    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


def _load_error(exc: Exception):
    """(tensorflow.error.Code name, first line of the message) of a failed load, as TF
    Serving reports it: TensorFlow's own code, DATA_LOSS for a saved_model.pb that does not
    parse."""
    if isinstance(exc, tf.errors.OpError):
        code, message = ERROR_CODES.values_by_number[exc.error_code].name, exc.message
    else:
        code = "DATA_LOSS" if isinstance(exc, DecodeError) else "UNKNOWN"
        message = str(exc) or type(exc).__name__
    return code, (message.strip().splitlines() or [""])[0]


class ModelVersions:
    """Keeps the newest loadable version under `<base>/<model_name>` serving; polls for pushes."""

    def __init__(self, model_base: str, model_name: str, poll_seconds: float = 1.0):
        self.model_name = model_name
        self.model_dir = os.path.join(model_base, model_name)
        self.poll_seconds = poll_seconds
        self._current: Optional[LoadedVersion] = None
        self._statuses: Dict[int, VersionStatus] = {}
        self._failed: Dict[int, tuple] = {}  # version -> its file listing when its load failed
        self._seen = (None, None)  # (version, file listing) at the last poll
        self._retired: List[weakref.ref] = []  # unloaded versions requests may still hold
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="model-watcher", daemon=True)

    def start(self):
        self.poll_once()
        self._thread.start()

    def stop(self):
        self._stop.set()

    def poll_once(self):
        """Load the newest version once its files stopped changing between two polls.

        A push copies files one by one (the Pusher is not atomic), so a version is loaded only
        when a poll sees the same listing as the one before; a failed load is tried again
        only when the version's files change.
        """
        versions = numeric_versions(self.model_dir)
        if not versions or (self._current is not None and self._current.version >= versions[-1]):
            return
        newest = versions[-1]
        path = os.path.join(self.model_dir, str(newest))
        seen, self._seen = self._seen, (newest, _listing(path))
        if (self._current is not None and seen != self._seen) or \
                self._failed.get(newest) == self._seen[1]:
            return
        self._statuses[newest] = VersionStatus(newest, LOADING)
        try:
            loaded = LoadedVersion(path, newest)
        except Exception as exc:  # noqa: BLE001 - keep serving the old version, report this one
            code, message = _load_error(exc)
            self._failed[newest] = self._seen[1]
            self._statuses[newest] = VersionStatus(newest, END, code, message)
            LOG.warning("could not load %s version %d: %s: %s", self.model_name, newest, code,
                        message)
            del exc
            _release_memory()  # what the failed load had built
            return
        previous, self._current = self._current, loaded
        self._statuses[newest] = VersionStatus(newest, AVAILABLE)
        LOG.info("serving %s version %d from %s", self.model_name, newest, path)
        if previous is not None:
            self._statuses[previous.version] = VersionStatus(previous.version, END)
            self._retired.append(weakref.ref(previous))

    def release_retired(self):
        """Free unloaded versions once the last request holding one has finished: a loaded
        SavedModel's objects hold reference cycles, which only the cycle collector frees."""
        if self._retired:
            gc.collect()
            held = [ref for ref in self._retired if ref() is not None]
            if len(held) < len(self._retired):
                _release_memory()
            self._retired = held

    def _poll_loop(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
                self.release_retired()
            except (OSError, tf.errors.OpError) as exc:  # files moved while listing: next poll
                LOG.warning("polling %s: %s", self.model_dir, exc)

    def _check_name(self, model_name: str):
        if model_name != self.model_name:
            raise RequestError("NOT_FOUND", f"model {model_name!r} not found; this server "
                                            f"serves {self.model_name!r}")

    def resolve(self, model_name: str, version: Optional[int] = None,
                label: str = "") -> LoadedVersion:
        """The loaded version a request names (the newest when `version` is None); an unknown
        model or version is NOT_FOUND, as in TF Serving."""
        self._check_name(model_name)
        current = self._current
        if current is None:
            raise RequestError("NOT_FOUND", f"no version of {self.model_name!r} is loaded yet "
                                            f"under {self.model_dir}")
        if version is not None and version != current.version:
            raise RequestError("NOT_FOUND", f"version {version} of {self.model_name!r} is not "
                                            f"loaded; loaded version: {current.version}")
        if label:
            raise RequestError("INVALID_ARGUMENT", f"version label {label!r} is not defined")
        return current

    def statuses(self, model_name: str, version: Optional[int] = None) -> List[VersionStatus]:
        """Every version this server has seen, newest first (or only `version`)."""
        self._check_name(model_name)
        known = sorted(dict(self._statuses).values(), key=lambda s: -s.version)
        if version is not None:
            known = [s for s in known if s.version == version]
            if not known:
                raise RequestError("NOT_FOUND", f"version {version} of {self.model_name!r} "
                                                "was never seen by this server")
        if not known:
            raise RequestError("NOT_FOUND", f"no version of {self.model_name!r} under "
                                            f"{self.model_dir}")
        return known


def _release_memory():
    """Collect cycles, then hand freed heap back to the system (host_memory.trim_heap; not
    glibc: the memory is reused, only not returned)."""
    gc.collect()
    host_memory.trim_heap()


def _listing(path: str):
    """(relative path, size, mtime) of every file under `path`."""
    files = (os.path.join(root, name) for root, _, names in tf.io.gfile.walk(path)
             for name in names)
    return tuple(sorted((os.path.relpath(file, path), stat.length, stat.mtime_nsec)
                        for file, stat in ((file, tf.io.gfile.stat(file)) for file in files)))
