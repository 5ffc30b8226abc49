"""What one client may cost our server, each a flag of `mbt serve` (docs/serving.md, "Limits").

Without TensorFlow, so `mbt serve --help` stays fast.
"""
import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Limits:
    # A request body (REST) or message (gRPC) over this is refused, 413 / RESOURCE_EXHAUSTED.
    # 64 MiB holds the largest window the signatures take (1024 frames of tests/data's 33 KB
    # JPEGs and 60 s of audio: 38 MB over gRPC, 58 MB as REST's JSON) and three timeline
    # batches (8 windows of 8 frames, 8 s: 6 MB / 20 MB); docs/serving.md, "Limits".
    max_request_bytes: int = 64 << 20
    # REST requests handled at once (TF Serving's --rest_api_num_threads and its default).
    rest_threads: int = 4 * (os.cpu_count() or 1)
    # Seconds a REST connection may stay silent (TF Serving's REST timeout: 30 s).
    idle_timeout: int = 30
    # Open REST connections; past it new ones wait in the listen backlog until one closes.
    max_connections: int = 512
