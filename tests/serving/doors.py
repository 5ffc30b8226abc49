"""The server's two front doors as a test sees them: one `predict` over gRPC (the official
stubs) and one over REST (a plain HTTP client: urllib + json, as a foreign system would), both
answering outputs as numpy arrays or raising `Refused(code, message)`, so that one table of
bad requests is sent through both."""
import base64
import json
import urllib.error
import urllib.request

import grpc
import numpy as np

from mbt_keras import contract
from serving.client import PredictClient, predict_request
from tests.serving.conftest import MODEL_NAME

# TF Serving's REST statuses back to the gRPC codes they stand for.
HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 503: "UNAVAILABLE", 500: "INTERNAL"}


class Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class GrpcDoor:
    name = "grpc"

    def __init__(self, target: str):
        self.client = PredictClient(target, MODEL_NAME)

    def predict(self, inputs: dict, signature: str = contract.SIG_SERVING, *,
                model: str = MODEL_NAME, version: int = None):
        """(outputs, version that answered)."""
        try:
            response = self.client.stub.Predict(predict_request(inputs, model, signature, version),
                                                timeout=120)
        except grpc.RpcError as exc:
            raise Refused(exc.code().name, exc.details() or "") from None
        import tensorflow as tf
        return ({name: tf.make_ndarray(proto) for name, proto in response.outputs.items()},
                response.model_spec.version.value)

    def close(self):
        self.client.close()


def to_json(value: np.ndarray):
    """A numpy input as TF Serving's JSON: bytes as {"b64": ...}, NaN as the NaN token."""
    if value.dtype == object:
        return np.frompyfunc(lambda b: {"b64": base64.b64encode(b).decode()}, 1, 1)(value).tolist()
    return value.tolist()


def http(method: str, url: str, body=None):
    """(HTTP status, parsed JSON answer) of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class RestDoor:
    name = "rest"

    def __init__(self, url: str):
        self.url = url

    def predict(self, inputs: dict, signature: str = contract.SIG_SERVING, *,
                model: str = MODEL_NAME, version: int = None):
        """(outputs, version asked for): columnar, as TF Serving's REST API takes any inputs."""
        path = f"/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")
        status, answer = http("POST", f"{self.url}{path}:predict",
                              {"signature_name": signature,
                               "inputs": {name: to_json(np.asarray(value))
                                          for name, value in inputs.items()}})
        if status != 200:
            assert set(answer) == {"error"}, answer
            raise Refused(HTTP_CODES[status], answer["error"])
        outputs = answer["outputs"]
        return {name: np.array(value) for name, value in outputs.items()}, version

    def close(self):
        pass
