"""How the server refuses a request: one typed error, read the same by both front doors.

The code is a canonical status name (google.rpc / tensorflow.error.Code); the gRPC door sends
it as the call's status, the REST door as the HTTP status TF Serving's REST API gives it
(RESOURCE_EXHAUSTED, a request over the size limit, as 413).
"""
import logging

LOG = logging.getLogger("mbt.serve")
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404,
               "RESOURCE_EXHAUSTED": 413, "UNAVAILABLE": 503, "INTERNAL": 500}


class RequestError(Exception):
    """A request the server refuses, with its status code name and the one-line reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown status code {code!r}")
        self.code = code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def log_refusal(method: str, exc: RequestError):
    """One log line per refused request, the same from both doors."""
    LOG.warning("refused %s: %s: %s", method, exc.code, exc)


def too_large(size: int, limit: int) -> RequestError:
    """A request of `size` bytes over the `limit` (`mbt serve --max-request-bytes`), worded as
    gRPC itself refuses a message over grpc.max_receive_message_length, so both doors read the
    same."""
    return RequestError("RESOURCE_EXHAUSTED",
                        f"Received message larger than max ({size} vs. {limit})")
