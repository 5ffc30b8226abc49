"""TF Serving's REST API on a real server process, through a plain HTTP client (urllib):
status, metadata and predict in row and columnar format, answers equal the in-process
SavedModel's and the gRPC door's; what only JSON can get wrong is refused with 400."""
import json
import re
import urllib.error
import urllib.request

import numpy as np
import pytest
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from mbt_keras import contract
from serving.client import predict_saved_model
from tests.serving.conftest import CLASS_NAMES, MODEL_NAME
from tests.serving.doors import GrpcDoor, http, to_json


@pytest.fixture(scope="module")
def rest(server_process):
    return f"{server_process[3]}/v1/models/{MODEL_NAME}"


def test_model_status_lists_the_available_version_as_tf_serving_does(rest, server_process):
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}
    assert http("GET", rest) == (200, expected)
    assert http("GET", f"{rest}/versions/1") == (200, expected)
    status, answer = http("GET", f"{rest}/versions/7")
    assert status == 404 and "version 7" in answer["error"]
    status, answer = http("GET", f"{server_process[3]}/v1/models/nope")
    assert status == 404 and answer == {"error": "model 'nope' not found; this server serves 'mbt'"}


def test_metadata_is_the_signature_def_map_as_json(rest):
    status, answer = http("GET", f"{rest}/metadata")
    assert status == 200
    assert answer["model_spec"] == {"name": MODEL_NAME, "signature_name": "", "version": "1"}
    signatures = json_format.ParseDict(answer["metadata"]["signature_def"],
                                       get_model_metadata_pb2.SignatureDefMap())
    serving = signatures.signature_def[contract.SIG_SERVING]
    assert set(serving.inputs) == {contract.IN_FRAMES_JPEG, contract.IN_WAVEFORM}
    assert answer["metadata"]["signature_def"]["signature_def"][contract.SIG_SERVING][
        "inputs"][contract.IN_FRAMES_JPEG]["dtype"] == "DT_STRING"
    assert {contract.SIG_UINT8, contract.SIG_EXAMPLES, contract.SIG_CONTRACT} <= set(
        signatures.signature_def)


def test_row_and_columnar_predictions_equal_the_saved_model_and_the_grpc_door(
        rest, server, exported, clip_request):
    local = predict_saved_model(exported[1], clip_request)
    row = {name: to_json(value)[0] for name, value in clip_request.items()}
    status, rows = http("POST", f"{rest}:predict", {"instances": [row, row]})
    assert status == 200, rows
    assert len(rows["predictions"]) == 2 and set(rows["predictions"][0]) == {
        contract.OUT_SCORES, contract.OUT_TOP_K_NAMES, contract.OUT_TOP_K_SCORES}
    status, columns = http("POST", f"{rest}/versions/1:predict",
                           {"signature_name": contract.SIG_SERVING,
                            "inputs": {name: to_json(value) for name, value in clip_request.items()}})
    assert status == 200, columns
    grpc_outputs, _ = GrpcDoor(server[0]).predict(clip_request)
    for scores in (rows["predictions"][0][contract.OUT_SCORES],
                   rows["predictions"][1][contract.OUT_SCORES],
                   columns["outputs"][contract.OUT_SCORES][0]):
        np.testing.assert_allclose(scores, local[contract.OUT_SCORES][0], atol=1e-6)
        np.testing.assert_allclose(scores, grpc_outputs[contract.OUT_SCORES][0], atol=1e-6)
    assert rows["predictions"][0][contract.OUT_TOP_K_NAMES] == [
        n.decode() for n in local[contract.OUT_TOP_K_NAMES][0]]
    assert set(rows["predictions"][0][contract.OUT_TOP_K_NAMES]) <= set(CLASS_NAMES)


def test_uint8_frames_in_rows_and_the_contract_signature_without_inputs(rest, exported):
    frames = np.random.default_rng(0).integers(0, 256, (1, 3, 40, 60, 3), dtype=np.uint8)
    waveform = np.zeros((1, 16000), np.float32)
    status, answer = http("POST", f"{rest}:predict", {
        "signature_name": contract.SIG_UINT8,
        "instances": [{contract.IN_FRAMES_UINT8: frames[0].tolist(),
                       contract.IN_WAVEFORM: waveform[0].tolist()}]})
    assert status == 200, answer
    local = predict_saved_model(exported[1], {contract.IN_FRAMES_UINT8: frames,
                                              contract.IN_WAVEFORM: waveform}, contract.SIG_UINT8)
    np.testing.assert_allclose(answer["predictions"][0][contract.OUT_SCORES],
                               local[contract.OUT_SCORES][0], atol=1e-6)
    # TF Serving's REST API refuses a signature without inputs (tensorflow/serving#1676);
    # ours answers it in columnar format, so a REST client can read the contract.
    status, answer = http("POST", f"{rest}:predict",
                          {"signature_name": contract.SIG_CONTRACT, "inputs": {}})
    assert status == 200, answer
    assert json.loads(answer["outputs"])["class_names"] == CLASS_NAMES


def _post_raw(url: str, data: bytes):
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_requests_only_json_can_get_wrong_are_refused_with_400(rest, server_process, clip_request):
    columns = {name: to_json(value) for name, value in clip_request.items()}
    row = {name: value[0] for name, value in columns.items()}
    bad = {
        "not JSON": (b"{'instances': ", r"JSON parse error"),
        "not an object": (b"[1, 2]", r"must be a JSON object"),
        "both formats": ({"instances": [row], "inputs": columns}, r"exactly one of 'instances'"),
        "neither format": ({"signature_name": contract.SIG_SERVING}, r"exactly one of"),
        "instances not a list": ({"instances": row}, r"'instances' must be a list"),
        "instances naming different inputs": (
            {"instances": [row, {contract.IN_FRAMES_JPEG: row[contract.IN_FRAMES_JPEG]}]},
            r"instance 1 has inputs \['frames'\]"),
        "unnamed value for two inputs": ({"inputs": columns[contract.IN_WAVEFORM]},
                                         r"has inputs \['frames', 'waveform'\]: name each one"),
        "bad base64": ({"inputs": {**columns, contract.IN_FRAMES_JPEG: [[{"b64": "@@"}] * 4]}},
                       r"input 'frames' holds a b64 value that is not base64"),
        "ragged list": ({"inputs": {**columns, contract.IN_WAVEFORM: [[0.0, 0.0], [0.0]]}},
                        r"'waveform' is not a rectangular"),
        "number for a JPEG": ({"inputs": {**columns, contract.IN_FRAMES_JPEG: [[1, 2, 3, 4]]}},
                              r"'frames' has dtype number, expected string"),
    }
    for problem, (body, message) in bad.items():
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, answer = _post_raw(f"{rest}:predict", data)
        assert status == 400 and set(answer) == {"error"}, (problem, status, answer)
        assert re.search(message, answer["error"]), (problem, answer)
    assert http("POST", f"{rest}:classify", {"examples": []})[0] == 400
    assert http("GET", f"{server_process[3]}/v2/models/{MODEL_NAME}")[0] == 404
    assert http("POST", f"{rest}:predict", {"inputs": columns})[0] == 200  # still serving
