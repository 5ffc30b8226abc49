"""A real server process, real gRPC through the official tensorflow-serving-api stubs."""
import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, prediction_service_pb2_grpc)

from mbt_keras import contract
from serving.client import PredictClient, predict_saved_model
from tests.serving.conftest import CLASS_NAMES, MODEL_NAME


def test_grpc_round_trip_on_a_real_clip_matches_the_in_process_saved_model(
        server, exported, clip_request):
    target, _ = server
    client = PredictClient(target, MODEL_NAME)
    outputs, version = client.predict(clip_request)
    local = predict_saved_model(exported[1], clip_request)
    assert version == 1
    assert outputs[contract.OUT_SCORES].shape == (1, len(CLASS_NAMES))
    np.testing.assert_allclose(outputs[contract.OUT_SCORES], local[contract.OUT_SCORES], atol=1e-6)
    assert outputs[contract.OUT_TOP_K_NAMES].tolist() == local[contract.OUT_TOP_K_NAMES].tolist()
    # Names come from the asset and follow the scores, best first.
    best = np.argsort(-local[contract.OUT_SCORES][0], kind="stable")
    assert [n.decode() for n in outputs[contract.OUT_TOP_K_NAMES][0]] == [CLASS_NAMES[i] for i in best]


def test_uint8_signature_answers_over_grpc(server, exported):
    target, _ = server
    frames = np.random.default_rng(0).integers(0, 256, (1, 3, 40, 60, 3), dtype=np.uint8)
    inputs = {contract.IN_FRAMES_UINT8: frames,
              contract.IN_WAVEFORM: np.zeros((1, 16000), np.float32)}  # >= the 0.96 s window
    outputs, _ = PredictClient(target, MODEL_NAME).predict(inputs, contract.SIG_UINT8)
    local = predict_saved_model(exported[1], inputs, contract.SIG_UINT8)
    np.testing.assert_allclose(outputs[contract.OUT_SCORES], local[contract.OUT_SCORES], atol=1e-6)


def test_model_status_and_metadata(server):
    target, _ = server
    channel = grpc.insecure_channel(target)
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL_NAME}), timeout=30)
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": MODEL_NAME}, metadata_field=["signature_def"])
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
        request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    serving = signatures.signature_def[contract.SIG_SERVING]
    assert set(serving.inputs) == {contract.IN_FRAMES_JPEG, contract.IN_WAVEFORM}
    assert serving.inputs[contract.IN_FRAMES_JPEG].dtype == tf.string.as_datatype_enum
    assert set(serving.outputs) == {contract.OUT_SCORES, contract.OUT_TOP_K_NAMES,
                                    contract.OUT_TOP_K_SCORES}
    assert {contract.SIG_UINT8, contract.SIG_EXAMPLES, contract.SIG_LABELS} <= set(
        signatures.signature_def)
    with pytest.raises(grpc.RpcError) as error:
        model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "nope"}), timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
