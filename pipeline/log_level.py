"""How loud `mbt` is. Quiet by default: no third-party warnings (google.api_core's Python
version notices, deprecations) and no TensorFlow/CUDA start-up logs, so a command's own
output comes first. `mbt --verbose ...` or MBT_LOG_LEVEL=INFO (or DEBUG) brings them back.

Set before TensorFlow is imported (TF reads TF_CPP_MIN_LOG_LEVEL once, at import), and
through the environment, so subprocesses (`mbt serve`, Beam workers) inherit it.
"""
import logging
import os
import warnings

from mbt_keras import contract

ENV = "MBT_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Warnings raised from our own code stay visible when quiet.
OUR_MODULES = r"(mbt_keras|components|pipeline|serving|kubeflow)(\.|$)"
THIRD_PARTY_LOGGERS = ("tensorflow", "absl", "h5py", "jax")


def configure(verbose: bool = False) -> str:
    """Apply the level of `--verbose` / MBT_LOG_LEVEL (default WARNING); returns its name."""
    name = os.environ.get(ENV, "INFO" if verbose else "WARNING").upper()
    if name not in LEVELS:
        raise SystemExit(f"error: {ENV}={name!r}; expected one of {', '.join(LEVELS)}")
    if verbose and LEVELS.index(name) > LEVELS.index("INFO"):
        name = "INFO"
    os.environ[ENV] = name
    if LEVELS.index(name) <= LEVELS.index("INFO"):
        return name
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ[contract.QUIETED_TF_LOGS_ENV] = "1"
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
