"""The one request path of the server, behind both front doors (gRPC and REST).

A request names a model, maybe a version, a signature and its inputs; this resolves the
version, checks the inputs against the signature (names, dtypes, shapes: the value checks are
ops inside the exported signatures), runs it (through the batching queue when one is on) and
turns a refusal into a RequestError whose message reads the same whichever door it leaves by.
The doors only translate: TensorProtos or JSON in, numpy arrays out.
"""
import logging
import re
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2

from mbt_keras import contract
from serving.batching import BatchScheduler
from serving.model_versions import LoadedVersion, ModelVersions
from serving.request_error import RequestError

LOG = logging.getLogger("mbt.serve")
# How a failed tf.debugging.Assert of the exported signature reads: "assertion failed: [...]".
ASSERTION = re.compile(r"assertion failed: \[(.*)\]\s*$", re.M)
SIGNATURE_DEF_FIELD = "signature_def"

# decode(input name, the door's value, the signature's TensorSpec) -> numpy array of its dtype
Decode = Callable[[str, object, tf.TensorSpec], np.ndarray]


def wrong_dtype(name: str, got: str, spec: tf.TensorSpec) -> RequestError:
    """The refusal of an input of another dtype than the signature's, worded once for both doors."""
    return RequestError("INVALID_ARGUMENT",
                        f"input {name!r} has dtype {got}, expected {spec.dtype.name}")


def _shape_text(shape) -> str:
    return str([d if d is not None else -1 for d in shape])


class RequestPath:
    """Resolve, check, (batch,) run; `batcher` None runs every request on its own."""

    def __init__(self, versions: ModelVersions, batcher: Optional[BatchScheduler] = None):
        self.versions = versions
        self.batcher = batcher

    def predict(self, model_name: str, version: Optional[int], label: str, signature_name: str,
                read_inputs: Callable[[dict], dict], decode: Decode, output_filter=()):
        """(loaded version, signature name, {output name: numpy array}) of one request;
        `read_inputs(input specs)` gives the door's {name: value} (a REST request may leave
        the name of a signature's one input out), `decode` each value as an array."""
        return self.prepare(model_name, version, label, signature_name, read_inputs, decode,
                            output_filter)()

    def prepare(self, model_name: str, version: Optional[int], label: str, signature_name: str,
                read_inputs: Callable[[dict], dict], decode: Decode, output_filter=()):
        """`predict` in two steps: this checks and decodes the request, the function it
        returns runs it (and waits for its batch). The function holds only the decoded arrays,
        so a door can let go of its own form of the request (REST: the parsed JSON) before
        the wait."""
        loaded = self.versions.resolve(model_name, version, label)
        signature_name = signature_name or contract.SIG_SERVING
        function = loaded.signature(signature_name)
        specs = function.structured_input_signature[1]
        inputs = read_inputs(specs)
        missing, unknown = sorted(set(specs) - set(inputs)), sorted(set(inputs) - set(specs))
        if missing or unknown:
            raise RequestError("INVALID_ARGUMENT",
                               f"signature {signature_name!r} expects inputs {sorted(specs)}; "
                               f"missing input(s) {missing}, unknown input(s) {unknown}")
        arrays = {name: decode(name, value, specs[name]) for name, value in inputs.items()}
        for name, value in arrays.items():
            if not specs[name].shape.is_compatible_with(value.shape):
                raise RequestError("INVALID_ARGUMENT",
                                   f"input {name!r} has shape {list(value.shape)}, expected "
                                   f"{_shape_text(specs[name].shape.as_list())} (-1: any size)")
        wanted = tuple(output_filter) or tuple(function.structured_outputs)
        unknown_outputs = sorted(set(wanted) - set(function.structured_outputs))
        if unknown_outputs:
            raise RequestError("INVALID_ARGUMENT",
                               f"unknown output(s) {unknown_outputs} in output_filter; signature "
                               f"{signature_name!r} has {sorted(function.structured_outputs)}")

        def run(batch: dict) -> dict:
            return run_signature(loaded, signature_name, batch, wanted)
        size = batch_size(arrays, specs)
        batcher = self.batcher if size is not None else None

        def answer():
            if batcher is None:
                return loaded, signature_name, run(arrays)
            key = (loaded, signature_name, wanted,
                   tuple(sorted((n, a.dtype.str, a.shape[1:]) for n, a in arrays.items())))
            return loaded, signature_name, batcher.submit(key, arrays, size, run)
        return answer

    def metadata(self, model_name: str, version: Optional[int], label: str = ""):
        """(loaded version, SignatureDefMap) as GetModelMetadata answers it."""
        loaded = self.versions.resolve(model_name, version, label)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in loaded.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(sig)
        return loaded, signature_map

    def statuses(self, model_name: str, version: Optional[int] = None):
        return self.versions.statuses(model_name, version)


def batch_size(arrays: dict, specs: dict) -> Optional[int]:
    """The request's batch size when it can share a model call with others: every input has
    a batch dimension of the same size >= 1; None otherwise (it then runs on its own, so a
    request the signature refuses for its batch is refused as it would be unbatched)."""
    sizes = {a.shape[0] if a.ndim else None for a in arrays.values()}
    if not arrays or len(sizes) != 1 or None in sizes or 0 in sizes or \
            any(spec.shape.rank in (None, 0) or spec.shape[0] is not None for spec in specs.values()):
        return None
    return sizes.pop()


def run_signature(loaded: LoadedVersion, signature_name: str, arrays: dict, wanted) -> dict:
    """Call the signature on numpy inputs; a refusal of its checks becomes a RequestError."""
    function = loaded.signatures[signature_name]
    specs = function.structured_input_signature[1]
    tensors = {name: tf.constant(value, dtype=specs[name].dtype) for name, value in arrays.items()}
    try:
        outputs = function(**tensors)
    except tf.errors.InvalidArgumentError as exc:
        raise RequestError("INVALID_ARGUMENT",
                           f"signature {signature_name!r} refused the inputs: "
                           f"{_refusal(exc.message, tensors)}") from exc
    return {name: np.asarray(outputs[name].numpy()) for name in wanted}


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
