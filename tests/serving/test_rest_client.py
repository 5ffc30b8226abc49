"""`mbt predict --rest`: TF Serving's REST request JSON, and a client that starts without
TensorFlow."""
import base64
import json
import os
import subprocess
import sys

import numpy as np

from serving import rest_client
from serving.client import clip_inputs
from tests.serving.conftest import CLIP, REPO

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


def test_rest_answers_become_the_grpc_clients_output_arrays():
    answer = json.loads('{"predictions": [{"top_k_names": ["dog", "speech"], '
                        '"top_k_scores": [0.75, 0.25], "scores": [0.25, 0.75]},'
                        '{"top_k_names": ["speech", "dog"], "top_k_scores": [0.5, 0.5], '
                        '"scores": [0.5, 0.5]}]}')
    outputs = rest_client.outputs(answer["predictions"])
    assert outputs["scores"].shape == (2, 2) and outputs["top_k_names"][1].tolist() == [
        "speech", "dog"]


def test_predict_help_imports_no_tensorflow_nor_grpc():
    status, out, _, heavy = run_guarded_mbt("predict", "--help")
    assert status == 0 and "--rest URL" in out
    assert heavy == "[]"


def test_an_unreachable_rest_server_is_one_error_line_naming_the_url():
    status, out, errors, heavy = run_guarded_mbt("predict", CLIP, "--rest", "127.0.0.1:9")
    assert status == 1 and out == ""
    assert errors == ["error: http://127.0.0.1:9/v1/models/mbt: cannot reach the server: "
                      "[Errno 111] Connection refused"]
    assert heavy == "[]"
