"""`mbt serve`: the official `tensorflow_model_server` when installed, else our gRPC server.

Both read `<model-base>/<model-name>/<version>/`, the layout the Pusher writes.
"""
import argparse
import logging
import os
import shutil
import socket
import sys

from mbt_keras import contract
from mbt_keras.user_error import UserError, existing_folder, in_range

OFFICIAL_BINARY = "tensorflow_model_server"


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--model-base", required=True,
                        help="directory holding <model-name>/<version>/ SavedModels")
    parser.add_argument("--port", type=int, required=True, help="gRPC port (0: pick a free one)")
    parser.add_argument("--model-name", default="mbt")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (our server only; the official binary binds all)")
    parser.add_argument("--poll-seconds", type=float, default=1.0,
                        help="how often to look for a newly pushed version")
    parser.add_argument("--builtin", action="store_true",
                        help="use our server even when tensorflow_model_server is on PATH")


def official_command(binary: str, args) -> list:
    return [binary, f"--port={args.port}", f"--model_name={args.model_name}",
            f"--model_base_path={os.path.abspath(os.path.join(args.model_base, args.model_name))}",
            f"--file_system_poll_wait_seconds={max(1, round(args.poll_seconds))}"]


def check_args(args) -> None:
    """The flags, checked before a server starts."""
    existing_folder(args.model_base, "--model-base")
    in_range(args.port, "--port", low=0, high=65535)
    in_range(args.poll_seconds, "--poll-seconds", above=0)


def check_port_free(host: str, port: int) -> None:
    """gRPC binds with SO_REUSEPORT, so our server would share a port another one holds and
    answer only some of its clients: a port in use is refused first."""
    if not port:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({error.strerror}); "
                            "is another server using it?") from None


def run(args) -> int:
    check_args(args)
    binary = shutil.which(OFFICIAL_BINARY)
    if binary and not args.builtin:
        command = official_command(binary, args)
        print("exec " + " ".join(command), flush=True)
        if os.environ.pop(contract.QUIETED_TF_LOGS_ENV, None):  # its log is the output here
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        os.execv(binary, command)
    check_port_free(args.host, args.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from serving.server import serve  # TensorFlow only when our server is the one that runs
    serve(args.model_base, args.model_name, args.host, args.port, poll_seconds=args.poll_seconds)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.server_cli", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
