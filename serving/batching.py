"""Server-side batching as TF Serving's `--enable_batching` does it.

Requests that can share a model call (same version, signature and outputs; inputs of equal
non-batch shapes: TF Serving too concatenates only equal shapes unless it pads) wait in one
queue; a batch closes when it holds `max_batch_size` clips or its first request waited
`batch_timeout_micros`, and one of `num_batch_threads` threads runs it as one call, padded to
the next of `allowed_batch_sizes` when given, and splits the outputs back. A request that
would open a batch beyond `max_enqueued_batches` is refused UNAVAILABLE at once. A merged call
the signature refuses is run again request by request, so a refusal reaches only the request
that caused it, with the message it gets unbatched. Parameters are those of TF Serving's
`BatchingParameters` (session_bundle_config.proto), readable from its text format.
"""
import collections
import dataclasses
import logging
import os
import re
import threading
import time
from typing import Callable, Dict, Hashable, List, Optional, Tuple

import numpy as np

from serving.request_error import RequestError

LOG = logging.getLogger("mbt.serve")


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's BatchingParameters; defaults are its SharedBatchScheduler's."""
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = os.cpu_count() or 1
    allowed_batch_sizes: Tuple[int, ...] = ()

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"batching parameter {name} must be >= 1, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batching parameter batch_timeout_micros must be >= 0, got "
                             f"{self.batch_timeout_micros}")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[0] < 1 or sizes[-1] != self.max_batch_size):
            raise ValueError(f"batching parameter allowed_batch_sizes {sizes} must increase and "
                             f"end with max_batch_size ({self.max_batch_size}), as in TF Serving")

    def to_text(self) -> str:
        """TF Serving's text format (a `--batching_parameters_file` for the official server)."""
        lines = [f"{name} {{ value: {getattr(self, name)} }}" for name in _WRAPPED]
        return "\n".join(lines + [f"allowed_batch_sizes: {size}"
                                  for size in self.allowed_batch_sizes]) + "\n"


_WRAPPED = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
_TOKEN = re.compile(r'\s+|#[^\n]*|(?P<tok>[A-Za-z_]\w*|-?\d+|"[^"]*"|[{}:\[\],])')


def parse_text(text: str) -> dict:
    """{field: value} of a BatchingParameters in protobuf text format, e.g.
    `max_batch_size { value: 32 }` and `allowed_batch_sizes: 8` (repeated, or `[8, 16]`)."""
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise ValueError(f"cannot read {text[position:position + 20]!r}")
        position = match.end()
        if match.group("tok"):
            tokens.append(match.group("tok"))
    fields, sizes = {}, []

    def take(expected=None):
        if not tokens:
            raise ValueError(f"unexpected end, expected {expected or 'a value'}")
        token = tokens.pop(0)
        if expected and token != expected:
            raise ValueError(f"expected {expected!r}, got {token!r}")
        return token

    while tokens:
        name = take()
        if name in _WRAPPED or name == "thread_pool_name":
            if tokens[:1] == [":"]:
                take(":")
            take("{"), take("value"), take(":")
            value = take()
            take("}")
            if name != "thread_pool_name":  # a name for the official server's thread pool
                fields[name] = _integer(name, value)
        elif name == "allowed_batch_sizes":
            take(":")
            if tokens[:1] == ["["]:
                take("[")
                while tokens[:1] != ["]"]:
                    sizes.append(_integer(name, take()))
                    if tokens[:1] == [","]:
                        take(",")
                take("]")
            else:
                sizes.append(_integer(name, take()))
        elif name == "pad_variable_length_inputs":
            take(":")
            if take() == "true":
                raise ValueError("pad_variable_length_inputs: this server batches only requests "
                                 "of equal shapes and does not pad")
        else:
            raise ValueError(f"unknown BatchingParameters field {name!r}")
    if sizes:
        fields["allowed_batch_sizes"] = tuple(sizes)
    return fields


def _integer(name: str, token: str) -> int:
    if not re.fullmatch(r"-?\d+", token):
        raise ValueError(f"{name}: expected an integer, got {token}")
    return int(token)


def read_parameters(path: Optional[str], **overrides) -> BatchingParameters:
    """The parameters of a `--batching-parameters-file` (if any), with the flags given on
    top; a ValueError names the file and the problem."""
    fields = {}
    if path:
        try:
            with open(path) as f:
                fields = parse_text(f.read())
        except (OSError, ValueError) as exc:
            raise ValueError(f"batching parameters file {path}: {exc}") from None
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return BatchingParameters(**fields)


class _Task:
    def __init__(self, arrays: dict, size: int):
        self.arrays, self.size = arrays, size
        self.done = threading.Event()
        self.outputs: Optional[dict] = None
        self.error: Optional[BaseException] = None


class _Batch:
    def __init__(self, run: Callable[[dict], dict]):
        self.run, self.tasks, self.size = run, [], 0
        self.opened = time.monotonic()


class BatchScheduler:
    """Per-key queues of batches and the threads that run them (TF Serving's
    SharedBatchScheduler with one queue per batchable kind of request)."""

    def __init__(self, parameters: BatchingParameters):
        self.parameters = parameters
        self.batch_sizes = collections.Counter()  # clips per model call (before padding)
        self._open: Dict[Hashable, _Batch] = {}
        self._closed: Dict[Hashable, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Condition()
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                         for i in range(parameters.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Hashable, arrays: dict, size: int, run: Callable[[dict], dict]) -> dict:
        """The outputs of `arrays` (a request of `size` clips), run in a batch with others of
        the same `key`; `run` computes a merged batch. Blocks until done."""
        limit = self.parameters.max_batch_size
        if size > limit:
            raise RequestError("INVALID_ARGUMENT", f"batch size {size} is larger than the "
                                                   f"maximum batch size {limit}")
        task = _Task(arrays, size)
        with self._lock:
            batch = self._open.get(key)
            if batch is not None and batch.size + size > limit:
                self._closed[key].append(self._open.pop(key))
                batch = None
            if batch is None:
                if len(self._closed[key]) >= self.parameters.max_enqueued_batches:
                    raise RequestError("UNAVAILABLE", "the batch scheduling queue is full "
                                                      f"({self.parameters.max_enqueued_batches}"
                                                      " batches waiting); retry later")
                batch = self._open[key] = _Batch(run)
            batch.tasks.append(task)
            batch.size += size
            self._lock.notify()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    def stop(self):
        with self._lock:
            self._stopped = True
            self._lock.notify_all()

    def summary(self) -> str:
        calls = sum(self.batch_sizes.values())
        clips = sum(size * n for size, n in self.batch_sizes.items())
        return (f"batching: {clips} clips in {calls} model calls; clips per call: "
                f"{dict(sorted(self.batch_sizes.items()))}")

    def _next(self) -> Tuple[Optional[_Batch], Optional[float]]:
        """(the oldest batch ready to run, or None with the seconds until one may be)."""
        now, timeout = time.monotonic(), self.parameters.batch_timeout_micros / 1e6
        ready, wait = None, None
        for key in list(self._closed) + list(self._open):
            if self._closed.get(key):
                candidate = (self._closed[key][0], key, True)
            elif key in self._open:
                batch = self._open[key]
                due = batch.opened + timeout - now
                if batch.size < self.parameters.max_batch_size and due > 0:
                    wait = due if wait is None else min(wait, due)
                    continue
                candidate = (batch, key, False)
            else:
                continue
            if ready is None or candidate[0].opened < ready[0].opened:
                ready = candidate
        if ready is None:
            return None, wait
        batch, key, closed = ready
        if closed:
            self._closed[key].popleft()
            if not self._closed[key]:
                del self._closed[key]
        else:
            del self._open[key]
        return batch, None

    def _work(self):
        while True:
            with self._lock:
                batch, wait = self._next()
                while batch is None:
                    if self._stopped:
                        return
                    self._lock.wait(wait)
                    batch, wait = self._next()
            self._run(batch)

    def _run(self, batch: _Batch):
        tasks = batch.tasks
        self.batch_sizes[batch.size] += 1
        try:
            outputs = batch.run(self._merged(tasks, batch.size))
            offsets = np.cumsum([0] + [task.size for task in tasks])
            for task, start, end in zip(tasks, offsets, offsets[1:]):
                task.outputs = {name: value[start:end] for name, value in outputs.items()}
        except Exception as exc:  # noqa: BLE001 - each request gets its own answer below
            if len(tasks) == 1:
                tasks[0].error = exc
            else:  # a refusal (or failure) of the merged call: find whose it is
                for task in tasks:
                    try:
                        task.outputs = batch.run(task.arrays)
                    except Exception as single:  # noqa: BLE001 - that request's own answer
                        task.error = single
        for task in tasks:
            task.done.set()

    def _merged(self, tasks: List[_Task], size: int) -> dict:
        """The tasks' inputs concatenated on the batch axis, padded (repeating the first
        clip) to the next allowed batch size."""
        padded = next((s for s in self.parameters.allowed_batch_sizes if s >= size), size)
        merged = {}
        for name in tasks[0].arrays:
            parts = [task.arrays[name] for task in tasks]
            if padded > size:
                parts.append(np.repeat(parts[0][:1], padded - size, axis=0))
            merged[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return merged
