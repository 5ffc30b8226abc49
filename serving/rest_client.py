"""Client of TF Serving's REST API (tensorflow.org/tfx/serving/api_rest), standard library only,
so `mbt predict --rest URL` starts without TensorFlow or gRPC. It speaks the documented API,
so the official `tensorflow_model_server --rest_api_port` answers it as `mbt serve
--rest-port` does.

- Requests use the row format: one instance per window, `frames` as `{"b64": ...}` JPEGs (the
  bytes the gRPC client sends), `waveform` as a JSON list of float32 values (written as
  doubles, they parse back to the same float32s).
- REST's predict answer does not say which version answered, so the client reads the newest
  AVAILABLE version once (`GET /v1/models/NAME`) and sends every request to
  `/versions/N:predict`: the contract and the scores come from that version (a whole
  `--timeline` too; should the server unload it meanwhile, its 404 ends the command), and the
  output names it.
- The input contract is a signature without inputs (`contract.SIG_CONTRACT`). Ours answers
  it over REST; the official server refuses any signature without inputs over REST
  (tensorflow/serving#1676), which `input_contract` turns into ContractMissing whose remedy
  is `--contract` (the model's `assets/input_contract.json`) or an explicit window.
"""
import base64
import http.client
import json
import urllib.parse

import numpy as np

from mbt_keras import contract
from mbt_keras.input_contract import InputContract
from mbt_keras.user_error import UserError
from serving.model_contract import ContractMissing


class RestError(UserError):
    """The server could not be reached or refused a request; the text is one line naming the
    URL and the reason (the server's `{"error": ...}` message when it sent one)."""

    def __init__(self, text: str, status: int = None, message: str = ""):
        super().__init__(text)
        self.status, self.message = status, message


def instances(inputs: dict) -> list:
    """TF Serving's row format of a batch of request inputs: one object per clip, bytes as
    `{"b64": ...}`, numbers as JSON numbers."""
    columns = {name: [[{"b64": base64.b64encode(v).decode("ascii")} for v in row]
                      if value.dtype == object else row.tolist() for row in value]
               for name, value in inputs.items()}
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def outputs(predictions: list) -> dict:
    """{output name: numpy array [batch, ...]} of a row-format answer (one object per clip),
    the shape the gRPC client returns."""
    if not predictions or not all(isinstance(row, dict) for row in predictions):
        raise ValueError("expected one object of named outputs per instance")
    return {name: np.asarray([row[name] for row in predictions]) for name in predictions[0]}


class RestClient:
    """One HTTP connection (kept alive) to a TF Serving REST API at `url`
    (`http://HOST:PORT`, a path prefix allowed; `HOST:PORT` means http)."""

    def __init__(self, url: str, model_name: str = "mbt", timeout: float = 60.0):
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--rest {url}: expected http://HOST:PORT")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._prefix = parts.path.rstrip("/")
        connection = (http.client.HTTPSConnection if parts.scheme == "https"
                      else http.client.HTTPConnection)
        self._connection = connection(parts.netloc, timeout=timeout)
        self.model_name = model_name
        self._version = None

    def _call(self, path: str, body: dict = None) -> dict:
        """The JSON object the server answers to GET `path` (POST of `body` when given)."""
        url = self.url + path
        try:
            self._connection.request(
                "GET" if body is None else "POST", self._prefix + path,
                body=None if body is None else json.dumps(body),
                headers={"Content-Type": "application/json"})
            response = self._connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._connection.close()  # the next request reconnects
            raise RestError(f"{url}: cannot reach the server: {exc}") from None
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if response.status != 200:
            message = ((answer.get("error") if isinstance(answer, dict) else None)
                       or data[:200].decode("utf-8", "replace").strip())
            raise RestError(f"{url}: HTTP {response.status}: {message}", response.status, message)
        if not isinstance(answer, dict):
            raise RestError(f"{url}: the answer is not a JSON object: {data[:200]!r}")
        return answer

    def version(self) -> int:
        """The newest AVAILABLE version of the model, read once."""
        if self._version is None:
            path = f"/v1/models/{self.model_name}"
            statuses = self._call(path).get("model_version_status", [])
            available = [int(s["version"]) for s in statuses if s.get("state") == "AVAILABLE"]
            if not available:
                raise RestError(f"{self.url}{path}: no AVAILABLE version of "
                                f"{self.model_name!r}: {json.dumps(statuses)}")
            self._version = max(available)
        return self._version

    def _predict(self, body: dict) -> dict:
        return self._call(f"/v1/models/{self.model_name}/versions/{self.version()}:predict", body)

    def predict(self, inputs: dict, signature: str = contract.SIG_SERVING):
        """(outputs as numpy arrays, version that answered), as PredictClient.predict."""
        answer = self._predict({"signature_name": signature, "instances": instances(inputs)})
        try:
            return outputs(answer["predictions"]), self.version()
        except (KeyError, ValueError) as exc:
            raise RestError(f"{self.url}: unexpected predict answer ({exc}): "
                            f"{json.dumps(answer)[:200]}") from None

    def input_contract(self) -> InputContract:
        """The model's contract, from its no-input signature (columnar `inputs: {}`, there
        is no row to send); ContractMissing when the model has no such signature or the
        server cannot call it over REST (the official server)."""
        try:
            answer = self._predict({"signature_name": contract.SIG_CONTRACT, "inputs": {}})
        except RestError as exc:
            if exc.status != 400 or contract.SIG_CONTRACT not in exc.message:
                raise
            if "not found" in exc.message:
                raise ContractMissing(f"model {self.model_name!r} has no "
                                      f"{contract.SIG_CONTRACT!r} signature (exported before "
                                      "models carried their input contract)") from None
            raise ContractMissing(
                f"{exc} (the official server's REST API cannot call a signature without "
                "inputs, tensorflow/serving#1676)",
                remedy=f"pass --contract with the model's assets/{contract.CONTRACT_ASSET} "
                "(or its SavedModel directory), or --num-frames and --seconds") from None
        value = answer.get("outputs")
        # One output comes back without its name (TF Serving's columnar answer).
        value = value.get(contract.OUT_CONTRACT) if isinstance(value, dict) else value
        if not isinstance(value, str):
            raise RestError(f"{self.url}: unexpected {contract.SIG_CONTRACT} answer: "
                            f"{json.dumps(answer)[:200]}")
        return InputContract.from_json(value)

    def close(self):
        self._connection.close()
