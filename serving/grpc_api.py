"""The gRPC front door: TF Serving's PredictionService and ModelService on the request path.

It only translates: TensorProtos in and out, ModelSpecs to (name, version, label), a
RequestError to the call's status.
"""
import logging

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving.model_versions import ERROR_CODES
from serving.request_error import RequestError, log_refusal
from serving.request_path import SIGNATURE_DEF_FIELD, RequestPath, wrong_dtype

LOG = logging.getLogger("mbt.serve")


def _decode(name: str, proto, spec: tf.TensorSpec) -> np.ndarray:
    """The request's TensorProto as a numpy array, refused unless of the signature's dtype."""
    dtype = tf.dtypes.as_dtype(proto.dtype) if proto.dtype else None
    if dtype != spec.dtype:
        raise wrong_dtype(name, dtype.name if dtype else "unset", spec)
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError) as exc:
        raise RequestError("INVALID_ARGUMENT",
                           f"input {name!r} is not a valid TensorProto: {exc}") from exc


def _spec(model_spec):
    """(name, version or None, label) of a ModelSpec."""
    version = model_spec.version.value if model_spec.HasField("version") else None
    return model_spec.name, version, model_spec.version_label


def _grpc_method(method):
    """Turn RequestErrors (and unexpected failures) into gRPC statuses; the server keeps serving."""
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except RequestError as exc:
            log_refusal(method.__name__, exc)
            context.abort(grpc.StatusCode[exc.code], str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
            LOG.exception("internal error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL,
                          f"internal error in {method.__name__} ({type(exc).__name__}); "
                          "details in the server log")
    wrapper.__name__ = method.__name__
    return wrapper


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, path: RequestPath):
        self._path = path

    @_grpc_method
    def Predict(self, request, context):
        loaded, signature_name, outputs = self._path.predict(
            *_spec(request.model_spec), request.model_spec.signature_name,
            lambda specs: request.inputs,
            _decode, request.output_filter)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = loaded.version
        response.model_spec.signature_name = signature_name
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
        return response

    @_grpc_method
    def GetModelMetadata(self, request, context):
        unknown = sorted(set(request.metadata_field) - {SIGNATURE_DEF_FIELD})
        if unknown or not request.metadata_field:
            raise RequestError("INVALID_ARGUMENT",
                               f"metadata_field must be [{SIGNATURE_DEF_FIELD!r}], got "
                               f"{list(request.metadata_field)}")
        loaded, signature_map = self._path.metadata(*_spec(request.model_spec))
        packed = any_pb2.Any()
        packed.Pack(signature_map)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = loaded.version
        response.metadata[SIGNATURE_DEF_FIELD].CopyFrom(packed)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, path: RequestPath):
        self._path = path

    @_grpc_method
    def GetModelStatus(self, request, context):
        name, version, _ = _spec(request.model_spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        for known in self._path.statuses(name, version):
            status = response.model_version_status.add()
            status.version = known.version
            status.state = get_model_status_pb2.ModelVersionStatus.State.Value(known.state)
            status.status.error_code = ERROR_CODES.values_by_name[known.error_code].number
            status.status.error_message = known.error_message
        return response


def add_services(server: grpc.Server, path: RequestPath):
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(path), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(path), server)
