"""`mbt serve` hands over to the official tensorflow_model_server when it is on PATH."""
import os
import subprocess
import sys

from tests.serving.conftest import REPO


def test_serve_execs_the_official_binary_with_the_pusher_layout(tmp_path):
    fake = tmp_path / "bin" / "tensorflow_model_server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"official $@\"\n")
    fake.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-m", "serving.server_cli", "--model-base", str(tmp_path / "base"),
         "--port", "8500", "--model-name", "mbt"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert (f"official --port=8500 --model_name=mbt --model_base_path={tmp_path}/base/mbt "
            f"--file_system_poll_wait_seconds=1") in result.stdout
