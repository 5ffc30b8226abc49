"""`mbt serve` hands over to the official tensorflow_model_server when it is on PATH."""
import os
import subprocess
import sys

from mbt_keras import contract
from tests.serving.conftest import REPO


def test_serve_execs_the_official_binary_with_the_pusher_layout(tmp_path):
    fake = tmp_path / "bin" / "tensorflow_model_server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"official $@\"\n")
    fake.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-m", "serving.server_cli", "--model-base", str(tmp_path),
         "--port", "8500", "--model-name", "mbt"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert (f"official --port=8500 --model_name=mbt --model_base_path={tmp_path}/mbt "
            f"--file_system_poll_wait_seconds=1") in result.stdout


def test_the_official_binary_logs_at_its_own_level_unless_the_user_set_one(tmp_path):
    """`mbt` silences TensorFlow's C++ logs for its own start-up; the official server's log
    is its output, so it gets its default level back, while a level the user set is kept."""
    fake = tmp_path / "bin" / "tensorflow_model_server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"level=[$TF_CPP_MIN_LOG_LEVEL]\"\n")
    fake.chmod(0o755)
    path = f"{fake.parent}{os.pathsep}{os.environ['PATH']}"
    outputs = {}
    for case, extra in {"quieted by mbt": {"TF_CPP_MIN_LOG_LEVEL": "3",
                                           contract.QUIETED_TF_LOGS_ENV: "1"},
                        "set by the user": {"TF_CPP_MIN_LOG_LEVEL": "2"}}.items():
        env = {k: v for k, v in os.environ.items()
               if k not in ("TF_CPP_MIN_LOG_LEVEL", contract.QUIETED_TF_LOGS_ENV)}
        outputs[case] = subprocess.run(
            [sys.executable, "-m", "serving.server_cli", "--model-base", str(tmp_path),
             "--port", "8500"], cwd=REPO, capture_output=True, text=True, timeout=60,
            env={**env, **extra, "PATH": path}).stdout
    assert "level=[]" in outputs["quieted by mbt"]
    assert "level=[2]" in outputs["set by the user"]
