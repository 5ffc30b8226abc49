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


def test_rest_batching_and_thread_flags_reach_the_official_binary_by_its_own_names(tmp_path):
    """--rest-port alone is 8501; batching flags become TF Serving's parameters file (on top
    of the one given), read back by the official server as --batching_parameters_file;
    TensorFlow's thread counts keep their names."""
    fake = tmp_path / "bin" / "tensorflow_model_server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"official $@\"\nfor a in \"$@\"; do case $a in "
                    "--batching_parameters_file=*) cat \"${a#*=}\";; esac; done\n")
    fake.chmod(0o755)
    (tmp_path / "base").mkdir()
    given = tmp_path / "batching.txt"
    given.write_text("max_batch_size { value: 32 }\nnum_batch_threads { value: 2 }\n")
    result = subprocess.run(
        [sys.executable, "-m", "serving.server_cli", "--model-base", str(tmp_path / "base"),
         "--port", "8500", "--rest-port", "--enable-batching", "--batching-parameters-file",
         str(given), "--batch-timeout-micros", "500", "--allowed-batch-sizes", "8,32",
         "--tensorflow-intra-op-parallelism", "1", "--tensorflow-inter-op-parallelism", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert "--rest_api_port=8501 --enable_batching --batching_parameters_file=" in result.stdout
    assert ("--tensorflow_intra_op_parallelism=1 --tensorflow_inter_op_parallelism=2"
            in result.stdout)
    for line in ("max_batch_size { value: 32 }", "batch_timeout_micros { value: 500 }",
                 "num_batch_threads { value: 2 }", "allowed_batch_sizes: 8",
                 "allowed_batch_sizes: 32"):
        assert line in result.stdout


def test_batching_flags_without_enable_batching_end_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "serve", "--model-base", str(tmp_path), "--port",
         "0", "--max-batch-size", "8", "--builtin"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "mbt serve: error: --max-batch-size need --enable-batching"


def test_a_limit_flag_out_of_range_ends_in_one_line(tmp_path):
    for flag, value, expected in (("--max-request-bytes", "0", "expected 1 to 2147483647"),
                                  ("--rest-idle-timeout", "0", "expected at least 1"),
                                  ("--rest-max-connections", "-3", "expected at least 1")):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "serve", "--model-base", str(tmp_path),
             "--port", "0", "--builtin", flag, value],
            cwd=REPO, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert result.stderr.strip() == f"mbt serve: error: {flag} {value}: {expected}"
