"""Read a model's input contract (`mbt_keras.input_contract`) from a server or a SavedModel.

From a server: a Predict call on the no-input `contract.SIG_CONTRACT` signature, which the
official `tensorflow_model_server` answers as ours does (docs/serving.md says why not
GetModelMetadata). From a directory: the `assets/` JSON file, without TensorFlow.
"""
import os
from typing import Callable, List, Optional, Tuple

from mbt_keras import contract
from mbt_keras.input_contract import InputContract
from mbt_keras.user_error import UserError

# Status codes of "no such signature": ours answers INVALID_ARGUMENT, the official server
# FAILED_PRECONDITION ("Serving signature key ... not found").
_NO_SIGNATURE = ("INVALID_ARGUMENT", "FAILED_PRECONDITION")


class ContractMissing(UserError):
    """The model's input contract cannot be read: exported before contracts existed, or a
    server that cannot return it; `remedy` says what the user can pass instead."""

    def __init__(self, message: str, remedy: str = "pass --num-frames and --seconds"):
        super().__init__(message)
        self.remedy = remedy


def from_saved_model(saved_model_dir: str) -> InputContract:
    path = os.path.join(saved_model_dir, "assets", contract.CONTRACT_ASSET)
    if "://" in path:  # gs:// and other TensorFlow filesystems (Dataflow workers, Vertex)
        import tensorflow as tf
        exists, opener = tf.io.gfile.exists, tf.io.gfile.GFile
    else:
        exists, opener = os.path.isfile, open
    if not exists(path):
        raise ContractMissing(f"{saved_model_dir} has no {contract.CONTRACT_ASSET} asset "
                              "(exported before models carried their input contract)")
    with opener(path, "r") as f:
        return InputContract.from_json(f.read())


def from_file(path: str) -> InputContract:
    """The contract in a JSON file (a model's `assets/input_contract.json`), or in the assets
    of the SavedModel directory `path`."""
    if os.path.isdir(path):
        return from_saved_model(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            return InputContract.from_json(f.read())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--contract {path}: not a readable input contract ({exc})") from None


def from_server(stub, model_name: str, version: int = None, timeout: float = 30.0) -> InputContract:
    """The contract of `model_name` (its newest version unless `version`) through a
    PredictionService stub; ContractMissing when the model has no contract signature."""
    import grpc
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = contract.SIG_CONTRACT
    if version is not None:
        request.model_spec.version.value = version
    try:
        response = stub.Predict(request, timeout=timeout)
    except grpc.RpcError as exc:
        if exc.code().name in _NO_SIGNATURE and contract.SIG_CONTRACT in (exc.details() or ""):
            raise ContractMissing(f"model {model_name!r} has no {contract.SIG_CONTRACT!r} "
                                  "signature (exported before models carried their input "
                                  "contract)") from exc
        raise
    return InputContract.from_json(response.outputs[contract.OUT_CONTRACT].string_val[0])


def window_for(model: InputContract, num_frames: int = None, seconds: float = None):
    """(num_frames, seconds, warnings) of the window to send: the model's own unless asked
    otherwise. A request the model would refuse raises UserError; one it would take but
    use differently than asked comes back with a warning saying how."""
    num_frames = model.num_frames if num_frames is None else num_frames
    seconds = model.window_seconds if seconds is None else seconds
    limits, notes = model.limits, []
    if not 1 <= num_frames <= limits.max_frames:
        raise UserError(f"--num-frames {num_frames}: the model takes 1 to {limits.max_frames} "
                        f"frames per window (its own: {model.num_frames})")
    if seconds <= 0 or seconds * model.sample_rate > limits.max_samples:
        raise UserError(f"--seconds {seconds:g}: the model takes windows of up to "
                        f"{limits.max_samples / model.sample_rate:g} s (its own: "
                        f"{model.window_seconds:g} s)")
    hears = contract.INPUT_SPEC in model.modalities
    if hears and seconds * model.sample_rate < limits.min_samples:
        raise UserError(f"--seconds {seconds:g} is shorter than the model's window: it needs "
                        f"{model.window_seconds:g} s of audio ({limits.min_samples} samples)")
    if num_frames != model.num_frames:
        notes.append(f"--num-frames {num_frames} differs from the model's {model.num_frames}: "
                     f"it takes {model.num_frames} of the frames sent at an even stride")
    if seconds != model.window_seconds:
        hearing = f" but it hears only the first {model.window_seconds:g} s" if hears else ""
        notes.append(f"--seconds {seconds:g} differs from the model's window of "
                     f"{model.window_seconds:g} s: its frames span {seconds:g} s{hearing}")
    return num_frames, seconds, notes


def resolve_window(load: Callable[[], InputContract], num_frames: int = None,
                   seconds: float = None
                   ) -> Tuple[Optional[InputContract], int, float, List[str]]:
    """(contract or None, num_frames, seconds, warnings): the window `mbt predict` and
    `mbt infer` send, `window_for` of the contract `load()` reads. A model exported before
    contracts existed takes the flags as they are and needs both: ContractMissing saying so
    otherwise; UserError for a window the model would refuse."""
    try:
        model = load()
    except ContractMissing as exc:
        if num_frames is None or seconds is None:
            raise ContractMissing(f"{exc}; {exc.remedy}") from None
        return None, num_frames, seconds, []
    return (model, *window_for(model, num_frames, seconds))
