"""How the server refuses a request: one typed error, read the same by both front doors.

The code is a canonical status name (google.rpc / tensorflow.error.Code); the gRPC door sends
it as the call's status, the REST door as the HTTP status TF Serving's REST API gives it.
"""
import logging

LOG = logging.getLogger("mbt.serve")
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404,
               "UNAVAILABLE": 503, "INTERNAL": 500}


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
