"""The REST front door: TF Serving's RESTful API (api_rest.md) on the request path.

    GET  /v1/models/NAME[/versions/N]            model_version_status (GetModelStatus as JSON)
    GET  /v1/models/NAME[/versions/N]/metadata   model_spec + metadata.signature_def
    POST /v1/models/NAME[/versions/N]:predict    {"signature_name", "instances" | "inputs"}

It only translates: JSON (bytes as {"b64": ...}; NaN and Infinity allowed, as in TF Serving)
to numpy arrays of the signature's dtypes and back ("predictions" for row-format requests,
"outputs" for columnar ones), a RequestError to {"error": message} with TF Serving's HTTP
status (400 bad request, 404 unknown model or version, 503 batch queue full). The HTTP
server and its limits are `serving/rest_server.py`.
"""
import base64
import binascii
import json
import logging
import re
import threading
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from google.protobuf import json_format

from serving.request_error import RequestError, log_refusal
from serving.request_path import SIGNATURE_DEF_FIELD, RequestPath, wrong_dtype

LOG = logging.getLogger("mbt.serve")
# Brackets nested deeper than this are refused before parsing (json.loads recurses per
# level): a signature's inputs are tensors of rank < 10, in a request two levels deep.
MAX_JSON_DEPTH = 64
_SCAN_CHUNK = 1 << 18  # bytes the depth scan looks at per step: its temporaries stay small
# The depth scan's view of a byte: whether it is a quote or a bracket, and its depth step.
_MARKS = np.isin(np.arange(256), [ord(c) for c in '"[]{}'])
_STEPS = np.zeros(256, np.int32)
_STEPS[[ord("["), ord("{")]], _STEPS[[ord("]"), ord("}")]] = 1, -1
_URL = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                  r"(?P<verb>/metadata|:predict|:classify|:regress)?")


def _decode(name: str, value, spec: tf.TensorSpec) -> np.ndarray:
    """A JSON value (nested lists of the input's values) as a numpy array of `spec`'s dtype.
    An empty list takes the signature's rank (JSON cannot say [0, 4] from [0])."""
    if spec.dtype == tf.string:
        array = np.array(value, dtype=object)
        flat = array.reshape(-1)
        for index, leaf in enumerate(flat):
            flat[index] = _bytes(name, leaf, spec)
    else:
        try:
            array = np.array(value)
        except ValueError:
            raise RequestError("INVALID_ARGUMENT", f"input {name!r} is not a rectangular "
                                                   "(nested) list of values") from None
        got = {"U": "string", "S": "string", "O": "string", "b": "bool"}.get(array.dtype.kind)
        if got and not (got == "bool" and spec.dtype == tf.bool):
            raise wrong_dtype(name, got, spec)
        if spec.dtype.is_integer and array.size and (
                array.dtype.kind == "f" or array.min() < spec.dtype.min or array.max() > spec.dtype.max):
            raise RequestError("INVALID_ARGUMENT", f"input {name!r} holds values that are not "
                                                   f"{spec.dtype.name} integers")
        array = array.astype(spec.dtype.as_numpy_dtype)
    if array.size == 0 and spec.shape.rank is not None and array.ndim < spec.shape.rank:
        array = array.reshape(array.shape + (0,) * (spec.shape.rank - array.ndim))
    return array


def _bytes(name: str, leaf, spec) -> bytes:
    if isinstance(leaf, str):
        return leaf.encode()
    if isinstance(leaf, dict) and list(leaf) == ["b64"] and isinstance(leaf["b64"], str):
        try:
            return base64.b64decode(leaf["b64"], validate=True)
        except binascii.Error:
            raise RequestError("INVALID_ARGUMENT",
                               f"input {name!r} holds a b64 value that is not base64") from None
    got = "bool" if isinstance(leaf, bool) else "number" if isinstance(leaf, (int, float)) \
        else "list (ragged nesting)" if isinstance(leaf, list) else "object"
    raise wrong_dtype(name, got, spec)


def _read_inputs(body: dict):
    """(the request's inputs as a function of the signature's input specs, "row" | "columnar")."""
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("INVALID_ARGUMENT", "the request must hold exactly one of "
                                               "'instances' (row format) or 'inputs' (columnar)")
    if "inputs" in body:
        given = body["inputs"]
        return (lambda specs: given if isinstance(given, dict) and not _is_b64(given)
                else _single(specs, given)), "columnar"
    instances = body["instances"]
    if not isinstance(instances, list):
        raise RequestError("INVALID_ARGUMENT", "'instances' must be a list (one item per clip)")

    def rows(specs):
        if not instances or not all(isinstance(i, dict) and not _is_b64(i) for i in instances):
            return _single(specs, instances) if instances else {name: [] for name in specs}
        names = set(instances[0])
        for index, instance in enumerate(instances):
            if set(instance) != names:
                raise RequestError("INVALID_ARGUMENT",
                                   f"instance {index} has inputs {sorted(instance)}, instance 0 "
                                   f"has {sorted(names)}: every instance names the same inputs")
        return {name: [instance[name] for instance in instances] for name in names}
    return rows, "row"


def _is_b64(value) -> bool:
    return isinstance(value, dict) and list(value) == ["b64"]


def _single(specs: dict, value) -> dict:
    """An unnamed value is the signature's one input; a signature of several needs names."""
    if len(specs) != 1:
        raise RequestError("INVALID_ARGUMENT", f"the signature has inputs {sorted(specs)}: "
                                               "name each one")
    return {next(iter(specs)): value}


def _json_value(name: str, value: np.ndarray):
    """An output as JSON: strings as text, or {"b64": ...} for outputs named `*_bytes`."""
    if value.dtype.kind not in "OS":  # numbers and bools
        return value.tolist()
    encode = (lambda b: {"b64": base64.b64encode(b).decode()}) if name.endswith("_bytes") \
        else (lambda b: b.decode("utf-8", "replace"))
    return np.frompyfunc(encode, 1, 1)(value).tolist() if value.ndim else encode(value.item())


def _predict_json(outputs: dict, form: str) -> dict:
    values = {name: _json_value(name, value) for name, value in outputs.items()}
    if form == "columnar":
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    sizes = {len(value) if isinstance(value, list) else None for value in values.values()}
    if len(sizes) != 1 or None in sizes:
        raise RequestError("INVALID_ARGUMENT", "the outputs do not share a batch dimension: "
                                               "ask in columnar format ('inputs')")
    return {"predictions": [{name: value[i] for name, value in values.items()}
                            for i in range(sizes.pop())]}


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether brackets outside strings nest deeper than `limit` in `body`, found without
    recursion (json.loads would raise RecursionError, or use a C stack frame per level).
    A body with at most `limit` opening brackets anywhere cannot be (a real request has a
    dozen: no scan). Otherwise escaped backslashes and quotes are dropped, so every quote left
    opens or closes a string, and only quotes and brackets are followed, a chunk at a time,
    carrying the depth and whether a string is open."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in body else body
    depth, in_string = 0, 0
    for start in range(0, len(text), _SCAN_CHUNK):
        chunk = np.frombuffer(text, np.uint8, min(_SCAN_CHUNK, len(text) - start), start)
        marks = chunk[_MARKS[chunk]]
        if not len(marks):
            continue
        quotes = np.cumsum(marks == ord('"'), dtype=np.int32)
        outside = (quotes + in_string) % 2 == 0
        levels = np.cumsum(_STEPS[marks] * outside, dtype=np.int32) + depth
        if levels.max() > limit:
            return True
        depth, in_string = int(levels[-1]), int(quotes[-1] + in_string) % 2
    return False


def parse_json(body: bytes):
    """The request body as JSON, or INVALID_ARGUMENT naming what is wrong with it."""
    if not body:
        raise RequestError("INVALID_ARGUMENT", "JSON parse error: the request body is empty")
    if json_too_deep(body):
        raise RequestError("INVALID_ARGUMENT", f"JSON parse error: nested deeper than "
                                               f"{MAX_JSON_DEPTH} levels")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError("INVALID_ARGUMENT", f"JSON parse error: {exc}") from None


class RestApi:
    """Answers the API's URLs from the request path; `handle` is all a server calls."""

    def __init__(self, path: RequestPath):
        self.path = path
        # One request's JSON at a time becomes Python objects (up to ~22x its bytes) and then
        # numpy arrays; parsing holds the GIL anyway, so this costs no throughput, and the
        # requests waiting for the model hold their arrays only.
        self._parse_lock = threading.Lock()

    def handle(self, method: str, url: str, read_body: Callable[[], bytes]):
        """(HTTP status, JSON-able answer) of one HTTP request; `read_body()` gives its body,
        read only when the URL takes one."""
        match = _URL.fullmatch(url.split("?")[0])
        try:
            if not match:
                raise RequestError("NOT_FOUND", f"Malformed request: {method} {url}")
            if (method == "POST") != (match["verb"] or "").startswith(":") or \
                    method not in ("GET", "POST"):  # POST only for verbs
                raise RequestError("INVALID_ARGUMENT", f"Malformed request: {method} {url}")
            name, label = match["name"], match["label"] or ""
            version = int(match["version"]) if match["version"] else None
            if match["verb"] is None:
                return 200, {"model_version_status": [
                    {"version": str(s.version), "state": s.state,
                     "status": {"error_code": s.error_code, "error_message": s.error_message}}
                    for s in self.path.statuses(name, version)]}
            if match["verb"] == "/metadata":
                loaded, signature_map = self.path.metadata(name, version, label)
                return 200, {"model_spec": {"name": name, "signature_name": "",
                                            "version": str(loaded.version)},
                             "metadata": {SIGNATURE_DEF_FIELD: json_format.MessageToDict(
                                 signature_map, preserving_proto_field_name=True)}}
            if match["verb"] != ":predict":
                raise RequestError("INVALID_ARGUMENT", f"{match['verb'][1:]} is not served: "
                                                       "the model has predict signatures only")
            return 200, self._predict(name, version, label, read_body)
        except RequestError as exc:
            log_refusal(_method_name(match), exc)
            return exc.http_status, {"error": str(exc)}

    def _predict(self, name: str, version: Optional[int], label: str,
                 read_body: Callable[[], bytes]) -> dict:
        with self._parse_lock:
            request = parse_json(read_body())
            if not isinstance(request, dict):
                raise RequestError("INVALID_ARGUMENT", "the request body must be a JSON object")
            signature_name = request.get("signature_name") or ""
            if not isinstance(signature_name, str):
                raise RequestError("INVALID_ARGUMENT", "'signature_name' must be a string")
            read, form = _read_inputs(request)
            del request
            answer = self.path.prepare(name, version, label, signature_name, read, _decode)
            del read  # the last reference to the parsed JSON
        _, _, outputs = answer()
        return _predict_json(outputs, form)


def _method_name(match) -> str:
    """The gRPC method a URL stands for, so a refusal logs the same from both doors."""
    verb = match["verb"] if match else None
    return {":predict": "Predict", "/metadata": "GetModelMetadata", None: "GetModelStatus"}.get(
        verb, "REST")
