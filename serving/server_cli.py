"""`mbt serve`: the official `tensorflow_model_server` when installed, else our server.

Both read `<model-base>/<model-name>/<version>/`, the layout the Pusher writes, and take the
same options: ours by these names, the official binary by its own (--rest_api_port,
--enable_batching, --batching_parameters_file, --rest_api_num_threads). The model base may be
any tf.io.gfile file system (gs://, where the Vertex pipeline pushes).
"""
import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile

from mbt_keras import contract
from mbt_keras.user_error import UserError, existing_folder, in_range
from serving.limits import Limits

OFFICIAL_BINARY = "tensorflow_model_server"
DEFAULT_REST_PORT = 8501  # TF Serving's documented REST port (its gRPC one is 8500)
# --flag: BatchingParameters field; each overrides the --batching-parameters-file's value.
BATCHING_FLAGS = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                  "num_batch_threads")
# TF Serving's flags for TensorFlow's thread pools (same names, dashes here). Concurrent
# requests already keep every core busy; threads per op on top only add hand-offs
# (docs/benchmarks.md, "Server-side batching").
THREAD_FLAGS = ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism")


def _sizes(text: str):
    try:
        return tuple(int(size) for size in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 4,8,16, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--model-base", required=True,
                        help="directory holding <model-name>/<version>/ SavedModels (local, "
                             "or gs:// or any tf.io.gfile file system)")
    parser.add_argument("--port", type=int, required=True, help="gRPC port (0: pick a free one)")
    parser.add_argument("--rest-port", type=int, nargs="?", const=DEFAULT_REST_PORT,
                        help=f"also serve TF Serving's REST API on this port ({DEFAULT_REST_PORT} "
                             "when given without a value; 0: pick a free one, ours only)")
    parser.add_argument("--model-name", default="mbt")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (our server only; the official binary binds all)")
    parser.add_argument("--poll-seconds", type=float, default=1.0,
                        help="how often to look for a newly pushed version")
    batching = parser.add_argument_group(
        "server-side batching (TF Serving's --enable_batching and BatchingParameters)")
    batching.add_argument("--enable-batching", action="store_true",
                          help="merge concurrent requests into one model call")
    batching.add_argument("--batching-parameters-file",
                          help="BatchingParameters in TF Serving's text format, e.g. "
                               "'max_batch_size { value: 32 }'; the flags below override it")
    for flag in BATCHING_FLAGS:
        batching.add_argument(f"--{flag.replace('_', '-')}", type=int,
                              help={"max_batch_size": "clips per model call (default 1000)",
                                    "batch_timeout_micros": "how long a batch waits to fill "
                                                            "(default 0: while threads are busy)",
                                    "max_enqueued_batches": "batches waiting per queue before "
                                                            "requests get UNAVAILABLE (default 10)",
                                    "num_batch_threads": "model calls at once (default: CPUs)"
                                    }[flag])
    batching.add_argument("--allowed-batch-sizes", type=_sizes,
                          help="pad each batch to one of these sizes, e.g. 4,8,16 (the last "
                               "must be the max batch size)")
    for flag in THREAD_FLAGS:
        parser.add_argument(f"--{flag.replace('_', '-')}", type=int, default=0,
                            help=f"TF Serving's --{flag}: threads TensorFlow uses "
                                 f"{'inside one op' if 'intra' in flag else 'to run ops at once'} "
                                 "(default 0: TensorFlow picks, one per core)")
    limits = parser.add_argument_group(
        "limits: what one client may cost (our server; docs/serving.md, 'Limits')")
    limits.add_argument("--max-request-bytes", type=int, default=Limits.max_request_bytes,
                        help="larger REST bodies get 413, larger gRPC messages "
                             f"RESOURCE_EXHAUSTED (default {Limits.max_request_bytes >> 20} MiB)")
    limits.add_argument("--rest-api-num-threads", type=int,
                        help="REST requests handled at once; TF Serving's flag (default 4 per "
                             f"CPU: {Limits.rest_threads})")
    limits.add_argument("--rest-idle-timeout", type=int, default=Limits.idle_timeout,
                        help="seconds a REST connection may stay silent before it is closed "
                             f"(408 in the middle of a request; default {Limits.idle_timeout}, "
                             "TF Serving's REST timeout)")
    limits.add_argument("--rest-max-connections", type=int, default=Limits.max_connections,
                        help="open REST connections; past it new ones wait until one closes "
                             f"(default {Limits.max_connections})")
    parser.add_argument("--builtin", action="store_true",
                        help="use our server even when tensorflow_model_server is on PATH")


def batching_parameters(args):
    """The BatchingParameters the flags ask for (None without --enable-batching); a
    ValueError names a bad value or file."""
    from serving.batching import read_parameters

    given = {flag: getattr(args, flag) for flag in BATCHING_FLAGS + ("allowed_batch_sizes",)}
    if not args.enable_batching:
        named = [f"--{flag.replace('_', '-')}" for flag, value in given.items() if value is not None]
        if args.batching_parameters_file:
            named.append("--batching-parameters-file")
        if named:
            raise ValueError(f"{', '.join(named)} need --enable-batching")
        return None
    return read_parameters(args.batching_parameters_file, **given)


def official_command(binary: str, args, batching=None) -> list:
    """The official server's command line; batching flags go to it as a parameters file."""
    base = os.path.join(args.model_base, args.model_name)
    command = [binary, f"--port={args.port}", f"--model_name={args.model_name}",
               f"--model_base_path={base if '://' in base else os.path.abspath(base)}",
               f"--file_system_poll_wait_seconds={max(1, round(args.poll_seconds))}"]
    if args.rest_port is not None:
        command.append(f"--rest_api_port={args.rest_port}")
    if args.rest_api_num_threads is not None:
        command.append(f"--rest_api_num_threads={args.rest_api_num_threads}")
    if batching is not None:
        command.append("--enable_batching")
        path = args.batching_parameters_file
        if path is None or any(getattr(args, f) is not None
                               for f in BATCHING_FLAGS + ("allowed_batch_sizes",)):
            with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="batching_",
                                             delete=False) as f:
                f.write(batching.to_text())
            path = f.name
        command.append(f"--batching_parameters_file={os.path.abspath(path)}")
    command += [f"--{flag}={getattr(args, flag)}" for flag in THREAD_FLAGS if getattr(args, flag)]
    return command


def check_args(args) -> None:
    """The flags, checked before a server starts."""
    existing_folder(args.model_base, "--model-base")
    in_range(args.port, "--port", low=0, high=65535)
    if args.rest_port is not None:
        in_range(args.rest_port, "--rest-port", low=0, high=65535)
    in_range(args.poll_seconds, "--poll-seconds", above=0)
    for flag in THREAD_FLAGS:
        in_range(getattr(args, flag), f"--{flag.replace('_', '-')}", low=0)
    # gRPC takes the limit as a 32-bit int
    in_range(args.max_request_bytes, "--max-request-bytes", low=1, high=(1 << 31) - 1)
    for flag in ("rest_api_num_threads", "rest_idle_timeout", "rest_max_connections"):
        if getattr(args, flag) is not None:
            in_range(getattr(args, flag), f"--{flag.replace('_', '-')}", low=1)


def limits(args) -> Limits:
    """The limits the flags ask for."""
    return Limits(max_request_bytes=args.max_request_bytes,
                  rest_threads=args.rest_api_num_threads or Limits.rest_threads,
                  idle_timeout=args.rest_idle_timeout, max_connections=args.rest_max_connections)


def check_port_free(host: str, port: int, flag: str = "--port") -> None:
    """gRPC binds with SO_REUSEPORT, so our server would share a port another one holds and
    answer only some of its clients: a port in use is refused first."""
    if not port:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"{flag} {port}: cannot listen on {host}:{port} ({error.strerror}); "
                            "is another server using it?") from None


def run(args) -> int:
    check_args(args)
    try:
        batching = batching_parameters(args)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    binary = shutil.which(OFFICIAL_BINARY)
    if binary and not args.builtin:
        command = official_command(binary, args, batching)
        print("exec " + " ".join(command), flush=True)
        if os.environ.pop(contract.QUIETED_TF_LOGS_ENV, None):  # its log is the output here
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        os.execv(binary, command)
    check_port_free(args.host, args.port)
    if args.rest_port:
        check_port_free(args.host, args.rest_port, "--rest-port")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from serving.server import serve  # TensorFlow only when our server is the one that runs
    serve(args.model_base, args.model_name, args.host, args.port, rest_port=args.rest_port,
          batching=batching, poll_seconds=args.poll_seconds,
          threads=tuple(getattr(args, flag) for flag in THREAD_FLAGS), limits=limits(args))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.server_cli", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
