"""A TF Serving-compatible gRPC server for machines without `tensorflow_model_server`.

It implements the official API (`tensorflow_serving.apis`): PredictionService.Predict and
GetModelMetadata, ModelService.GetModelStatus, over the same `<base>/<model_name>/<version>/`
layout, with TF Serving's default policy of serving the newest version. A watcher thread
loads newly pushed versions and swaps them in; a request holds the version it started with,
so a swap never fails an in-flight request.
"""
import logging
import os
import re
import threading
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)
from tensorflow_serving.apis import status_pb2

from mbt_keras import contract

LOG = logging.getLogger("mbt.serve")
SIGNATURE_DEF_FIELD = "signature_def"
# How a failed tf.debugging.Assert of the exported signature reads: "assertion failed: [...]".
ASSERTION = re.compile(r"assertion failed: \[(.*)\]\s*$", re.M)


class RequestError(Exception):
    """A request the server rejects; carries the gRPC status code for the reply."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def numeric_versions(model_dir: str):
    """Version numbers of the `<model_dir>/<int>/saved_model.pb` directories, ascending."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_dir)
                  if name.isdigit() and os.path.isfile(os.path.join(model_dir, name, "saved_model.pb")))


class LoadedVersion:
    """One loaded SavedModel version: its signature functions and SignatureDefs."""

    def __init__(self, path: str, version: int):
        self.path = path
        self.version = version
        self._saved_model = tf.saved_model.load(path)
        self.signatures = dict(self._saved_model.signatures)
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        self.signature_defs = {name: sig for name, sig in proto.meta_graphs[0].signature_def.items()
                               if name in self.signatures}

    def run(self, signature_name: str, inputs: dict, output_filter=()) -> dict:
        """Validate `inputs` (TensorProtos) against the signature, call it, return numpy outputs."""
        if signature_name not in self.signatures:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"signature {signature_name!r} not found in version {self.version}; "
                               f"available: {sorted(self.signatures)}")
        function = self.signatures[signature_name]
        specs = function.structured_input_signature[1]
        missing = sorted(set(specs) - set(inputs))
        unknown = sorted(set(inputs) - set(specs))
        if missing or unknown:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"signature {signature_name!r} expects inputs {sorted(specs)}; "
                               f"missing input(s) {missing}, unknown input(s) {unknown}")
        tensors = {name: _to_tensor(name, proto, specs[name]) for name, proto in inputs.items()}
        wanted = list(output_filter) or list(function.structured_outputs)
        unknown_outputs = sorted(set(wanted) - set(function.structured_outputs))
        if unknown_outputs:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"unknown output(s) {unknown_outputs} in output_filter; signature "
                               f"{signature_name!r} has {sorted(function.structured_outputs)}")
        try:
            outputs = function(**tensors)
        except tf.errors.InvalidArgumentError as exc:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"signature {signature_name!r} refused the inputs: "
                               f"{_refusal(exc.message, tensors)}") from exc
        return {name: outputs[name].numpy() for name in wanted}


def _refusal(message: str, tensors: dict) -> str:
    """The reason the exported signature's checks give (`mbt_keras.export`), without
    TensorFlow's graph-execution text; for the one failure the graph cannot attribute (a
    JPEG whose header reads but whose data does not decode) the frame is found here."""
    match = ASSERTION.search(message)
    if match:
        return match.group(1)
    if contract.IN_FRAMES_JPEG in tensors:
        for index, jpeg in np.ndenumerate(tensors[contract.IN_FRAMES_JPEG].numpy()):
            try:
                tf.io.decode_jpeg(jpeg, channels=3)
            except tf.errors.InvalidArgumentError:
                return (f"input {contract.IN_FRAMES_JPEG}[{', '.join(map(str, index))}]: "
                        "not a decodable JPEG (damaged or truncated data)")
    LOG.warning("unattributed op error: %s", message.replace("\n", " | "))
    return "the model could not compute on these inputs (details in the server log)"


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


def _to_tensor(name: str, proto, spec: tf.TensorSpec) -> tf.Tensor:
    """The request's TensorProto as a tensor of the signature's dtype and shape, or a RequestError."""
    dtype = tf.dtypes.as_dtype(proto.dtype) if proto.dtype else None
    if dtype != spec.dtype:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {name!r} has dtype {dtype.name if dtype else 'unset'}, "
                           f"expected {spec.dtype.name}")
    try:
        value = tf.make_ndarray(proto)
    except (ValueError, TypeError) as exc:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {name!r} is not a valid TensorProto: {exc}") from exc
    if not spec.shape.is_compatible_with(value.shape):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input {name!r} has shape {list(value.shape)}, expected "
                           f"{[d if d is not None else -1 for d in spec.shape.as_list()]} "
                           f"(-1: any size)")
    return tf.constant(value, dtype=spec.dtype)


class ModelWatcher:
    """Keeps the newest version under `<base>/<model_name>` loaded; polls for new pushes."""

    def __init__(self, model_base: str, model_name: str, poll_seconds: float = 1.0):
        self.model_name = model_name
        self.model_dir = os.path.join(model_base, model_name)
        self.poll_seconds = poll_seconds
        self._current = None
        self._seen = (None, None)  # (version, file listing) at the last poll
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
        when a poll sees the same listing as the one before; a failed load is retried.
        """
        versions = numeric_versions(self.model_dir)
        if not versions or (self._current is not None and self._current.version >= versions[-1]):
            return
        newest = versions[-1]
        path = os.path.join(self.model_dir, str(newest))
        seen, self._seen = self._seen, (newest, _listing(path))
        if self._current is not None and seen != self._seen:
            return
        try:
            loaded = LoadedVersion(path, newest)
        except Exception as exc:  # noqa: BLE001 - keep serving the old version, retry next poll
            LOG.warning("could not load %s version %d: %s", self.model_name, newest,
                        _first_line(str(exc)))
            return
        self._current = loaded
        LOG.info("serving %s version %d from %s", self.model_name, newest, path)

    def _poll_loop(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except OSError as exc:  # files moved while listing: look again next poll
                LOG.warning("polling %s: %s", self.model_dir, exc)

    def resolve(self, model_spec) -> LoadedVersion:
        """The loaded version a request's ModelSpec names; an unknown model, version or
        signature is a bad request (INVALID_ARGUMENT), like a malformed input."""
        if model_spec.name != self.model_name:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"model {model_spec.name!r} not found; this server serves "
                               f"{self.model_name!r}")
        current = self._current
        if current is None:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"no version of {self.model_name!r} is loaded yet under {self.model_dir}")
        if model_spec.HasField("version") and model_spec.version.value != current.version:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"version {model_spec.version.value} of {self.model_name!r} is not "
                               f"loaded; loaded version: {current.version}")
        if model_spec.version_label:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"version label {model_spec.version_label!r} is not defined")
        return current


def _listing(path: str):
    """(relative path, size, mtime) of every file under `path`."""
    return tuple(sorted((os.path.relpath(os.path.join(root, name), path),
                         os.path.getsize(os.path.join(root, name)),
                         os.path.getmtime(os.path.join(root, name)))
                        for root, _, names in os.walk(path) for name in names))


def _grpc_method(method):
    """Turn RequestErrors (and unexpected failures) into gRPC statuses; the server keeps serving."""
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except RequestError as exc:
            LOG.warning("refused %s: %s: %s", method.__name__, exc.code.name, exc)
            context.abort(exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
            LOG.exception("internal error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL,
                          f"internal error in {method.__name__} ({type(exc).__name__}); "
                          "details in the server log")
    wrapper.__name__ = method.__name__
    return wrapper


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, watcher: ModelWatcher):
        self._watcher = watcher

    @_grpc_method
    def Predict(self, request, context):
        loaded = self._watcher.resolve(request.model_spec)
        signature_name = request.model_spec.signature_name or contract.SIG_SERVING
        outputs = loaded.run(signature_name, request.inputs, request.output_filter)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self._watcher.model_name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = signature_name
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        return response

    @_grpc_method
    def GetModelMetadata(self, request, context):
        loaded = self._watcher.resolve(request.model_spec)
        unknown = sorted(set(request.metadata_field) - {SIGNATURE_DEF_FIELD})
        if unknown or not request.metadata_field:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"metadata_field must be [{SIGNATURE_DEF_FIELD!r}], got "
                               f"{list(request.metadata_field)}")
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in loaded.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(sig)
        packed = any_pb2.Any()
        packed.Pack(signature_map)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self._watcher.model_name
        response.model_spec.version.value = loaded.version
        response.metadata[SIGNATURE_DEF_FIELD].CopyFrom(packed)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, watcher: ModelWatcher):
        self._watcher = watcher

    @_grpc_method
    def GetModelStatus(self, request, context):
        loaded = self._watcher.resolve(request.model_spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = loaded.version
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        status.status.CopyFrom(status_pb2.StatusProto())
        return response


def build_server(model_base: str, model_name: str, host: str, port: int, *,
                 poll_seconds: float = 1.0, workers: int = 8):
    """(grpc.Server, ModelWatcher, bound port), not yet started; port 0 picks a free one."""
    watcher = ModelWatcher(model_base, model_name, poll_seconds)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", 256 << 20),
                                  ("grpc.max_send_message_length", 256 << 20)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(watcher), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(watcher), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    return server, watcher, bound


def serve(model_base: str, model_name: str, host: str, port: int, *, poll_seconds: float = 1.0):
    """Run until interrupted."""
    server, watcher, bound = build_server(model_base, model_name, host, port,
                                          poll_seconds=poll_seconds)
    watcher.start()
    server.start()
    LOG.info("PredictionService and ModelService for %r listening on %s:%d", model_name, host, bound)
    print(f"serving {model_name!r} from {watcher.model_dir} on {host}:{bound}", flush=True)
    try:
        server.wait_for_termination()
    finally:
        watcher.stop()
        server.stop(grace=2)
