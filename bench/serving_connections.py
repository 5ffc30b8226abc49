"""REST requests per second of `mbt serve` with N idle connections open against none, in the
same run: the idle ones (connected, silent, as a load balancer's pool or a slow-loris client
leaves them) must cost the server no thread and no throughput. A predict of a real clip's
window (JSON, row format, keep-alive connections) from a few client threads; the modes
alternate round by round so both see the same machine load. Also prints the server's thread
count with the idle connections open and without. Ends with `idle_throughput_ratio=X`
(N idle over none; 1.0: they cost nothing).

    .venv/bin/python bench/serving_connections.py [--preset mbt-micro] [--idle 200]
        [--clients 4] [--seconds 6]
"""
import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = REPO  # run as a script, this file's folder would shadow the `serving` package

from mbt_keras.config import from_preset  # noqa: E402
from mbt_keras.export import export_saved_model  # noqa: E402
from mbt_keras.model import build_model  # noqa: E402
from serving.client import clip_inputs  # noqa: E402
from serving.rest_client import instances  # noqa: E402

CLIP = os.path.join(REPO, "tests", "data", "bigbuckbunny_5s.mp4")


def start_server(model_base: str, *options: str):
    """(process, REST port) of `mbt serve --builtin` on free ports."""
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.server_cli", "--model-base", model_base, "--port", "0",
         "--rest-port", "0", "--builtin", *options], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        match = re.search(r"REST API of .* on http://127\.0\.0\.1:(\d+)$", line.strip())
        if match:
            return process, int(match.group(1))
    raise RuntimeError("server exited before listening")


def load_run(port: int, body: bytes, clients: int, seconds: float) -> int:
    """Predicts answered by `clients` threads, each on its own keep-alive connection."""
    answered = [0] * clients
    end = time.perf_counter() + seconds

    def client(index):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.perf_counter() < end:
            connection.request("POST", "/v1/models/mbt:predict", body,
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.read()
            answered[index] += 1
        connection.close()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(answered)


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mbt-micro")
    parser.add_argument("--idle", type=int, default=200, help="idle connections held open")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="per mode, split over 3 alternating rounds")
    args = parser.parse_args()
    config = from_preset(args.preset)
    inputs = clip_inputs(CLIP, num_frames=config.num_frames, seconds=config.spec_frames / 100)
    body = json.dumps({"instances": instances(inputs)}).encode()
    with tempfile.TemporaryDirectory() as base:
        export_saved_model(build_model(config), config,
                           [f"class_{i}" for i in range(sum(config.num_classes))],
                           os.path.join(base, "mbt", "1"))
        process, port = start_server(base, "--rest-max-connections", str(args.idle + 64),
                                     "--rest-idle-timeout", "3600")
        try:
            load_run(port, body, args.clients, 1.0)  # warm-up
            totals, threads = {"none": 0, f"{args.idle} idle": 0}, {}
            for _ in range(3):
                for mode in totals:
                    idle = [socket.create_connection(("127.0.0.1", port))
                            for _ in range(args.idle if mode != "none" else 0)]
                    time.sleep(0.5)  # accepted by now
                    threads[mode] = threads_of(process.pid)
                    totals[mode] += load_run(port, body, args.clients, args.seconds / 3)
                    for sock in idle:
                        sock.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"{args.preset}, REST predict of one real clip window ({len(body) / 1e3:.0f} KB of "
          f"JSON), {args.clients} keep-alive clients, {args.seconds:g} s per mode in 3 "
          f"alternating rounds")
    print(f"{'open idle connections':<24}{'req/s':>8}{'server threads':>16}")
    rates = {mode: count / args.seconds for mode, count in totals.items()}
    for mode, rate in rates.items():
        print(f"{mode:<24}{rate:>8.1f}{threads[mode]:>16}")
    print(f"idle_throughput_ratio={rates[f'{args.idle} idle'] / rates['none']:.2f}")


if __name__ == "__main__":
    main()
