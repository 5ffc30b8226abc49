"""A TF Serving-compatible server for machines without `tensorflow_model_server`.

The official API on both of TF Serving's doors: gRPC (`tensorflow_serving.apis`:
PredictionService.Predict and GetModelMetadata, ModelService.GetModelStatus) and, when a REST
port is given, its RESTful API (`serving/rest_api.py`). Both lead to one request path
(`serving/request_path.py`) over the same `<base>/<model_name>/<version>/` layout, with TF
Serving's default policy of serving the newest version (`serving/model_versions.py`) and,
when asked, its server-side batching (`serving/batching.py`). A request holds the version it
started with, so a swap never fails an in-flight request. What one client may cost is bounded
on both doors (`serving/limits.py`): the same request size limit, and on REST a fixed thread
pool, an idle timeout and a connection cap (`serving/rest_server.py`).
"""
import logging
import signal
from concurrent import futures
from typing import Optional

import grpc
import tensorflow as tf

from serving import grpc_api
from serving.batching import BatchingParameters, BatchScheduler
from serving.limits import Limits
from serving.model_versions import ModelVersions
from serving.request_path import RequestPath
from serving.rest_api import RestApi
from serving.rest_server import RestServer

LOG = logging.getLogger("mbt.serve")
# gRPC threads: each blocks while its request waits in a batch, so enough to fill batches.
GRPC_WORKERS = 64


class Server:
    """Both doors over one request path; ports 0 pick free ones (`grpc_port`, `rest_port`)."""

    def __init__(self, model_base: str, model_name: str, host: str, port: int, *,
                 rest_port: Optional[int] = None, batching: Optional[BatchingParameters] = None,
                 poll_seconds: float = 1.0, limits: Limits = Limits()):
        self.versions = ModelVersions(model_base, model_name, poll_seconds)
        self.batcher = BatchScheduler(batching) if batching else None
        path = RequestPath(self.versions, self.batcher)
        # gRPC refuses a larger message itself (RESOURCE_EXHAUSTED) before it is all read.
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=GRPC_WORKERS),
                                 options=[("grpc.max_receive_message_length",
                                           limits.max_request_bytes),
                                          ("grpc.max_send_message_length", 256 << 20)])
        grpc_api.add_services(self._grpc, path)
        self.grpc_port = self._grpc.add_insecure_port(f"{host}:{port}")
        if self.grpc_port == 0:
            raise OSError(f"could not bind {host}:{port}")
        self._http = None if rest_port is None else RestServer(
            RestApi(path), host, rest_port, threads=limits.rest_threads,
            max_request_bytes=limits.max_request_bytes, idle_timeout=limits.idle_timeout,
            max_connections=limits.max_connections)
        self.rest_port = self._http.port if self._http else None

    def start(self):
        self.versions.start()
        self._grpc.start()
        if self._http:
            self._http.start()

    def wait(self):
        self._grpc.wait_for_termination()

    def stop(self):
        self.versions.stop()
        if self._http:
            self._http.stop()
        self._grpc.stop(grace=2)
        if self.batcher:
            self.batcher.stop()
            LOG.info(self.batcher.summary())


def serve(model_base: str, model_name: str, host: str, port: int, *,
          rest_port: Optional[int] = None, batching: Optional[BatchingParameters] = None,
          poll_seconds: float = 1.0, threads=(0, 0), limits: Limits = Limits()):
    """Run until interrupted (Ctrl-C or SIGTERM: a graceful stop either way); `threads`:
    TensorFlow's (intra-op, inter-op) thread counts, 0 for its default, set before any op runs."""
    tf.config.threading.set_intra_op_parallelism_threads(threads[0])
    tf.config.threading.set_inter_op_parallelism_threads(threads[1])
    server = Server(model_base, model_name, host, port, rest_port=rest_port, batching=batching,
                    poll_seconds=poll_seconds, limits=limits)
    signal.signal(signal.SIGTERM, _interrupt)
    server.start()
    if batching:
        LOG.info("batching: %s", batching)
    LOG.info("limits: %s", limits)
    if server.rest_port is not None:
        print(f"REST API of {model_name!r} on http://{host}:{server.rest_port}", flush=True)
    print(f"serving {model_name!r} from {server.versions.model_dir} on {host}:{server.grpc_port}",
          flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
