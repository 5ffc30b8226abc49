"""Errors of the storage or the runtime, not of the clip: the accounted jobs let them propagate
so that the runner retries the bundle (Dataflow retries a batch work item four times), where a
dead letter would drop the clip for good, and TFX's cache would keep the shrunken dataset.

Problems of the data are ClipErrors (corrupt, too short, unknown label, ...) and PyAV's own
errors, which the decoder turns into ClipErrors. PyAV's error classes derive from Python's
OSError where FFmpeg reports an errno (av.error.FileNotFoundError, av.error.OSError), so an
error is told apart by being one of PyAV's, not by being an OSError.
"""
import sys

import av

# tf.errors that tf.io.gfile raises for a failure of the service (GCS timeouts, 429s and
# 503s, expired credentials), not of the file; a missing or unreadable file is the data's.
RETRYABLE_TF_ERRORS = ("UnavailableError", "DeadlineExceededError", "ResourceExhaustedError",
                       "AbortedError", "CancelledError", "UnauthenticatedError")


def is_retryable(error: BaseException) -> bool:
    """True for an error of the storage or runtime: an OSError that is not PyAV's (file
    systems, sockets), or one of RETRYABLE_TF_ERRORS."""
    if isinstance(error, av.error.FFmpegError):
        return False
    if isinstance(error, OSError):
        return True
    tf = sys.modules.get("tensorflow")  # not loaded: the error cannot be one of its
    return tf is not None and isinstance(
        error, tuple(getattr(tf.errors, name) for name in RETRYABLE_TF_ERRORS))
