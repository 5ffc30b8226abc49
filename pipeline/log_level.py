"""How loud `mbt` is. Quiet by default: no third-party warnings (google.api_core's Python
version notices, deprecations) and no TensorFlow/CUDA start-up logs, so a command's own
output comes first. `mbt --verbose ...` or MBT_LOG_LEVEL=INFO (or DEBUG) brings them back.

Set before TensorFlow is imported (TF reads TF_CPP_MIN_LOG_LEVEL once, at import), and
through the environment, so subprocesses (`mbt serve`, Beam workers) inherit it.
"""
import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import warnings

from mbt_keras import contract
from mbt_keras.user_error import UserError

ENV = "MBT_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Warnings raised from our own code stay visible when quiet.
OUR_MODULES = r"(mbt_keras|components|pipeline|serving|kubeflow)(\.|$)"
THIRD_PARTY_LOGGERS = ("tensorflow", "absl", "h5py", "jax")


def configure(verbose: bool = False) -> str:
    """Apply the level of `--verbose` / MBT_LOG_LEVEL (default WARNING); returns its name."""
    name = os.environ.get(ENV, "INFO" if verbose else "WARNING").upper()
    if name not in LEVELS:
        raise UserError(f"{ENV}={name!r}: expected one of {', '.join(LEVELS)}")
    if verbose and LEVELS.index(name) > LEVELS.index("INFO"):
        name = "INFO"
    os.environ[ENV] = name
    if LEVELS.index(name) <= LEVELS.index("INFO"):
        return name
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ[contract.QUIETED_TF_LOGS_ENV] = "1"
        if not any(isinstance(f, _QuietImport) for f in sys.meta_path):
            sys.meta_path.insert(0, _QuietImport("tensorflow"))
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    warnings.filterwarnings("ignore")
    warnings.filterwarnings("default", module=OUR_MODULES)
    for logger in THIRD_PARTY_LOGGERS:
        logging.getLogger(logger).setLevel(logging.ERROR)
        # absl resets its logger's level when its flags are parsed (TFX/Beam do that during a
        # run); a filter stays.
        logging.getLogger(logger).addFilter(_errors_only)
    return name


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


class _QuietImport(importlib.abc.MetaPathFinder):
    """Runs the first import of `name` with the process's native stderr (fd 2) sent to
    /dev/null. TF 2.21's native libraries log through absl before absl's logging is set up
    ("All log messages before absl::InitializeLog() ...", oneDNN and CUDA notices), which
    TF_CPP_MIN_LOG_LEVEL no longer reaches; TF 2.16 honours the variable, so this is a no-op
    there. An import that fails still raises, after stderr is back."""

    def __init__(self, name: str):
        self.name, self.busy = name, False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec_module(module):
            with _native_stderr_silenced():
                exec_module(module)
        spec.loader.exec_module = quiet_exec_module
        sys.meta_path.remove(self)  # once: later imports find the module in sys.modules
        return spec


@contextlib.contextmanager
def _native_stderr_silenced():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
