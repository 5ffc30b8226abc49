"""`mbt` starts quiet: no third-party warnings and no TensorFlow/CUDA logs unless asked."""
import os
import re
import subprocess
import sys
import warnings

import pytest

from mbt_keras import contract
from mbt_keras.user_error import UserError
from pipeline import log_level

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A TensorFlow/absl C++ log line ("2026-01-01 10:00:00.000: I tensorflow/...", "E0000 ...").
TF_LOG = re.compile(r"^(\S+ \S+: )?[IWEF]\d*\s*\S*\s*(tensorflow|external/|absl|cuda)|"
                    r"^[IWEF]\d{4} ", re.M)


def _mbt(*args, **env):
    quiet_env = {k: v for k, v in os.environ.items()
                 if k not in ("TF_CPP_MIN_LOG_LEVEL", log_level.ENV, "PYTHONWARNINGS")}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**quiet_env, "PYTHONPATH": REPO, **env})


@pytest.mark.parametrize("command", [["--help"], ["preprocess", "--help"],
                                     ["predict", "--help"]])
def test_help_prints_only_the_help(command):
    result = _mbt(*command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mbt")
    assert "Warning" not in result.stderr and not TF_LOG.search(result.stderr), result.stderr
    assert result.stderr == ""


def test_a_command_that_loads_tensorflow_is_quiet_unless_verbose():
    quiet = _mbt("summary", "--preset", "mbt-micro")
    assert quiet.returncode == 0, quiet.stderr
    assert "Total params" in quiet.stdout or "params" in quiet.stdout.lower()
    assert "Warning" not in quiet.stderr and not TF_LOG.search(quiet.stderr), quiet.stderr


def test_verbose_and_mbt_log_level_bring_third_party_output_back(monkeypatch):
    for name in ("TF_CPP_MIN_LOG_LEVEL", log_level.ENV, contract.QUIETED_TF_LOGS_ENV):
        monkeypatch.delenv(name, raising=False)
    with warnings.catch_warnings():
        assert log_level.configure(verbose=True) == "INFO"
        assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
        monkeypatch.setenv(log_level.ENV, "debug")
        assert log_level.configure() == "DEBUG"
        assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
        monkeypatch.setenv(log_level.ENV, "WARNING")
        assert log_level.configure() == "WARNING"
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
        assert os.environ[contract.QUIETED_TF_LOGS_ENV] == "1"
        with warnings.catch_warnings(record=True) as seen:  # keeps the configured filters
            warnings.warn_explicit("ours", FutureWarning, "x.py", 1, module="serving.client")
            warnings.warn_explicit("theirs", FutureWarning, "y.py", 1, module="google.api_core.x")
        assert [str(w.message) for w in seen] == ["ours"]
        monkeypatch.setenv(log_level.ENV, "LOUD")
        with pytest.raises(UserError, match="MBT_LOG_LEVEL='LOUD'"):
            log_level.configure()


def test_absl_warnings_stay_quiet_after_absl_parses_its_flags():
    """TFX's resolver logs absl warnings mid-run ('ArtifactQuery.property_predicate is not
    supported'), after absl has reset its logger's level from its flags."""
    code = ("from pipeline import log_level; log_level.configure()\n"
            "from absl import flags, logging\n"
            "flags.FLAGS(['mbt']); logging.set_verbosity(logging.INFO)\n"
            "logging.warning('third-party warning'); logging.error('third-party error')\n")
    env = {k: v for k, v in os.environ.items() if k != log_level.ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "third-party warning" not in done.stderr
    assert "third-party error" in done.stderr
