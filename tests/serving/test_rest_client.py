"""`mbt predict --rest`: TF Serving's REST request JSON, a client that starts without
TensorFlow, and its answers from a real `mbt serve --rest-port` equal to gRPC's."""
import base64
import http.server
import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from pipeline.cli import main
from serving import rest_client
from serving.client import PredictClient, clip_inputs, predict_saved_model
from tests.serving.conftest import CLIP, MODEL_NAME, REPO

HEAVY = ("tensorflow", "keras", "tfx", "apache_beam", "grpc")
# Runs `mbt ARGS...` and reports, at exit (argparse's --help exits inside main), which heavy
# packages the process imported.
GUARDED_MBT = f"""
import atexit, sys
atexit.register(lambda: print("heavy imports:", sorted(m for m in {HEAVY!r} if m in sys.modules),
                              file=sys.stderr))
from pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_guarded_mbt(*args):
    """(exit status, stdout, stderr lines but the last, heavy modules the process imported)."""
    result = subprocess.run([sys.executable, "-c", GUARDED_MBT, *args], cwd=REPO,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": REPO})
    *errors, heavy = result.stderr.strip().splitlines()
    assert heavy.startswith("heavy imports: "), result.stderr
    return result.returncode, result.stdout, errors, heavy[len("heavy imports: "):]


def test_rest_rows_carry_the_grpc_requests_jpeg_bytes_and_float32_waveform_exactly():
    inputs = clip_inputs(CLIP, num_frames=3, seconds=1.0)
    rows = json.loads(json.dumps(rest_client.instances(inputs)))
    assert len(rows) == 1 and set(rows[0]) == set(inputs)
    sent = [base64.b64decode(frame["b64"]) for frame in rows[0]["frames"]]
    assert sent == list(inputs["frames"][0]) and sent[0].startswith(b"\xff\xd8")
    waveform = np.asarray(rows[0]["waveform"], np.float32)
    assert waveform.shape == inputs["waveform"][0].shape
    assert np.array_equal(waveform, inputs["waveform"][0])
    assert np.abs(waveform).max() > 0  # real audio, not silence


def test_predict_help_imports_no_tensorflow_nor_grpc():
    status, out, _, heavy = run_guarded_mbt("predict", "--help")
    assert status == 0 and "--rest URL" in out
    assert heavy == "[]"


def test_an_unreachable_rest_server_is_one_error_line_naming_the_url():
    status, out, errors, heavy = run_guarded_mbt("predict", CLIP, "--rest", "127.0.0.1:9")
    assert status == 2 and out == ""
    assert errors == ["mbt predict: error: http://127.0.0.1:9/v1/models/mbt: cannot reach the server: "
                      "[Errno 111] Connection refused"]
    assert heavy == "[]"


@pytest.fixture(scope="module")
def rest_url(server_process):
    return server_process[3]


def test_rest_scores_equal_grpc_and_saved_model_scores_for_the_same_window(
        server, rest_url, exported, clip_request):
    rest, grpc = rest_client.RestClient(rest_url, MODEL_NAME), PredictClient(server[0], MODEL_NAME)
    try:
        (by_rest, rest_version), (by_grpc, grpc_version) = (rest.predict(clip_request),
                                                           grpc.predict(clip_request))
    finally:
        rest.close()
        grpc.close()
    assert rest_version == grpc_version == 1
    assert set(by_rest) == set(by_grpc)
    np.testing.assert_allclose(by_rest["scores"], by_grpc["scores"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(by_rest["scores"],
                               predict_saved_model(exported[1], clip_request)["scores"],
                               atol=1e-5, rtol=0)
    np.testing.assert_allclose(by_rest["top_k_scores"], by_grpc["top_k_scores"], atol=1e-5, rtol=0)
    assert by_rest["top_k_names"].tolist() == [[n.decode() for n in row]
                                               for row in by_grpc["top_k_names"]]


def test_predict_rest_prints_what_predict_server_prints_without_importing_tensorflow(
        server, rest_url, capsys):
    status, out, errors, heavy = run_guarded_mbt("predict", CLIP, "--rest", rest_url)
    assert (status, errors, heavy) == (0, [], "[]")
    assert main(["predict", CLIP, "--server", server[0]]) == 0
    by_grpc = capsys.readouterr().out
    assert out.replace(rest_url, "URL") == by_grpc.replace(server[0], "URL")
    assert re.search(r"^\s*[0-9.]+\s+speech$", out, re.M)


def test_a_rest_timeline_equals_the_grpc_timeline(server, rest_url, tmp_path, capsys):
    for door, where in (("--rest", rest_url), ("--server", server[0])):
        assert main(["predict", CLIP, door, where, "--timeline", "--batch-size", "4",
                     "--out", str(tmp_path / f"{door[2:]}.csv")]) == 0
    capsys.readouterr()
    rows = (tmp_path / "rest.csv").read_text()
    assert rows == (tmp_path / "server.csv").read_text() and len(rows.splitlines()) > 5


def test_predict_rest_reads_the_contract_from_the_server_or_from_contract(
        rest_url, exported, capsys):
    assert main(["predict", "--show-contract", "--rest", rest_url]) == 0
    by_rest = capsys.readouterr().out
    assert main(["predict", "--show-contract", "--saved-model", exported[1]]) == 0
    assert by_rest == capsys.readouterr().out
    asset = os.path.join(exported[1], "assets", "input_contract.json")
    assert main(["predict", "--show-contract", "--rest", rest_url, "--contract", asset]) == 0
    assert capsys.readouterr().out == by_rest
    assert main(["predict", CLIP, "--rest", rest_url, "--contract", CLIP]) == 2
    assert capsys.readouterr().err.startswith(f"mbt predict: error: --contract {CLIP}: not a readable input "
                                              "contract")


def test_rest_refusals_are_one_line_naming_the_url_and_the_servers_message(rest_url, capsys):
    assert main(["predict", CLIP, "--rest", rest_url, "--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mbt predict: error: {rest_url}/v1/models/nope: HTTP 404: ") and "nope" in err
    assert len(err.splitlines()) == 1
    assert main(["predict", CLIP, "--rest", rest_url, "--signature", "no_such"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"mbt predict: error: {rest_url}/v1/models/mbt/versions/1:predict: HTTP 400: .*"
                        r"no_such.*\n", err)


class _OfficialContractRefusal(http.server.BaseHTTPRequestHandler):
    """The two answers of the official tensorflow_model_server's REST API this test needs (it
    cannot be installed here): the model's status, and its refusal of a signature without
    inputs (json_tensor.cc, tensorflow/serving#1676)."""

    def _answer(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        self._answer(200, {"model_version_status": [{"version": "3", "state": "AVAILABLE",
                                                     "status": {"error_code": "OK"}}]})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer(400, {"error": "Failed to get input map for signature: "
                                    f"{body['signature_name']}"})

    def log_message(self, *args):
        pass


def test_a_server_that_cannot_return_the_contract_over_rest_asks_for_contract(capsys):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OfficialContractRefusal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert main(["predict", CLIP, "--rest", url]) == 2
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert err == (f"mbt predict: error: {url}/v1/models/mbt/versions/3:predict: HTTP 400: Failed to get "
                   "input map for signature: input_contract (the official server's REST API "
                   "cannot call a signature without inputs, tensorflow/serving#1676); pass "
                   "--contract with the model's assets/input_contract.json (or its SavedModel "
                   "directory), or --num-frames and --seconds\n")
