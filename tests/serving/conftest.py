"""Session fixtures for the serving tests: two exported mbt-micro versions, a real clip's
request inputs, and a real server process (`python -m serving.server_cli`, what `mbt serve`
runs) on a free localhost port."""
import contextlib
import os
import queue
import re
import shutil
import subprocess
import sys
import threading

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIP = os.path.join(REPO, "tests", "data", "bigbuckbunny_5s.mp4")
CLASS_NAMES = ["speech", "music", "dog", "engine"]
MODEL_NAME = "mbt"


def export_micro(export_dir: str, seed: int, config=None, class_names=CLASS_NAMES) -> str:
    """A SavedModel of an untrained model (`config`, default mbt-micro) whose weights
    `seed` decides."""
    import keras

    from mbt_keras.config import from_preset
    from mbt_keras.export import export_saved_model
    from mbt_keras.model import build_model

    keras.utils.set_random_seed(seed)
    config = config or from_preset("mbt-micro")
    return export_saved_model(build_model(config), config, class_names, export_dir)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """{version: SavedModel dir} of two mbt-micro models with different weights."""
    root = tmp_path_factory.mktemp("exports")
    return {1: export_micro(str(root / "v1"), seed=1), 2: export_micro(str(root / "v2"), seed=2)}


@pytest.fixture(scope="session")
def clip_request(exported):
    """JPEG frames + waveform of a 2 s window of a real H.264/AAC clip, as `mbt predict` sends."""
    from serving.client import clip_inputs
    return clip_inputs(CLIP, num_frames=4, seconds=2.0)


def start_server(model_base: str, *options: str, timeout: float = 120.0):
    """(process, 'host:port', log, REST URL) of a server (gRPC and REST on free ports, with
    `options` of `mbt serve`), once it says it is listening; `log` keeps growing with the
    server's output lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.server_cli", "--model-base", model_base, "--port", "0",
         "--rest-port", "0", "--model-name", MODEL_NAME, "--poll-seconds", "0.3", "--builtin",
         *options],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines, log, rest_url = queue.Queue(), [], None
    threading.Thread(target=lambda: [(log.append(line), lines.put(line))
                                     for line in process.stdout], daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            process.kill()
            raise RuntimeError("server did not start:\n" + "".join(log))
        rest = re.search(r"REST API of .* on (http://127\.0\.0\.1:\d+)$", line.strip())
        rest_url = rest.group(1) if rest else rest_url
        match = re.search(r"^serving .* on (127\.0\.0\.1:\d+)$", line.strip())
        if match:
            return process, match.group(1), log, rest_url
        if process.poll() is not None:
            raise RuntimeError("server exited:\n" + "".join(log))


@contextlib.contextmanager
def serving(model_dir: str, base, *options: str):
    """A running server over `base`, which gets `model_dir` as version 1; yields (target,
    model dir, its growing log, REST URL, pid) and stops the server after."""
    shutil.copytree(model_dir, base / MODEL_NAME / "1")
    process, target, log, rest_url = start_server(str(base), *options)
    try:
        yield target, str(base / MODEL_NAME), log, rest_url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def server_process(exported, tmp_path_factory):
    """The shared server, serving version 1 for the whole session (tests that push versions
    use `own_server`); yields (target, model dir, its growing log, REST URL, pid)."""
    with serving(exported[1], tmp_path_factory.mktemp("serving_base")) as running:
        yield running


@pytest.fixture
def own_server(exported, tmp_path):
    """(target, model dir) of a server of the test's own, for a test that changes the
    versions it serves."""
    with serving(exported[1], tmp_path / "serving_base") as running:
        yield running[:2]


@pytest.fixture(scope="session")
def server(server_process):
    """(target, model dir) of the running server."""
    return server_process[:2]
