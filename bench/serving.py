"""Our server against the same SavedModel in-process, and with server-side batching against
without, on the same inputs (a real clip's JPEG frames + waveform, one clip per request).

1. Batch-1 latency of a gRPC Predict vs the signature called in-process (target: gRPC p50 at
   most 1.2x the in-process p50).
2. Requests per second and p50/p99 latency at 1 and at 16 concurrent gRPC clients, against
   `mbt serve` and `mbt serve --enable-batching` (two servers of the same model, measured in
   alternating rounds so both see the same machine load). Ends with the line
   `batching_throughput_ratio=X` (16 clients, batching over not; goal >= 2).

    .venv/bin/python bench/serving.py [--preset mbt-tiny] [--requests 100] [--seconds 6]
        [--intra-op N --inter-op N]  (TensorFlow's thread pools, in-process and both servers)
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = REPO  # run as a script, this file's folder would shadow the `serving` package

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mbt_keras.config import from_preset  # noqa: E402
from mbt_keras.export import export_saved_model  # noqa: E402
from mbt_keras.model import build_model  # noqa: E402
from serving.client import PredictClient, clip_inputs, predict_request  # noqa: E402

CLIP = os.path.join(REPO, "tests", "data", "bigbuckbunny_5s.mp4")
CLIENTS = 16
# TF Serving's advice (session_bundle_config.proto): 2 x max_batch_size client threads, so one
# batch fills while the other runs on the second batch thread; a short fill timeout.
BATCHING = ["--enable-batching", "--max-batch-size", str(CLIENTS // 2), "--batch-timeout-micros",
            "2000", "--num-batch-threads", "2", "--max-enqueued-batches", "100"]


def start_server(model_base: str, *options: str):
    """(process, target) of `mbt serve --builtin [options]` on a free port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.server_cli", "--model-base", model_base, "--port", "0",
         "--builtin", *options], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    for line in process.stdout:
        match = re.search(r"^serving .* on (127\.0\.0\.1:\d+)$", line.strip())
        if match:
            return process, match.group(1)
    raise RuntimeError("server exited before listening")


def load_run(target: str, request, clients: int, seconds: float):
    """(requests answered, wall seconds, latencies in ms) of `clients` threads, each with its
    own channel, sending `request` back to back for `seconds`."""
    latencies, lock = [], threading.Lock()
    stubs = [PredictClient(target) for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    end = [0.0]

    def client(stub):
        start.wait()
        mine = []
        while time.perf_counter() < end[0]:
            begin = time.perf_counter()
            stub.stub.Predict(request, timeout=120)
            mine.append((time.perf_counter() - begin) * 1e3)
        with lock:
            latencies.extend(mine)
    threads = [threading.Thread(target=client, args=(stub,)) for stub in stubs]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    end[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    for stub in stubs:
        stub.close()
    return len(latencies), wall, latencies


def throughput(targets: dict, request, seconds: float, rounds: int = 3):
    """{(mode, clients): (requests/s, p50 ms, p99 ms)}, modes measured in alternating rounds."""
    totals = {}
    for _ in range(rounds):
        for clients in (1, CLIENTS):
            for mode, target in targets.items():
                load_run(target, request, clients, 0.5)  # warm-up: channels, batch shapes
                count, wall, latencies = load_run(target, request, clients, seconds / rounds)
                done, took, all_latencies = totals.get((mode, clients), (0, 0.0, []))
                totals[(mode, clients)] = (done + count, took + wall, all_latencies + latencies)
    return {key: (done / took, np.percentile(lat, 50), np.percentile(lat, 99))
            for key, (done, took, lat) in totals.items()}


def latencies_ms(calls, requests: int, warmup: int = 5):
    """Milliseconds per call of each of `calls`, interleaved so both see the same machine load."""
    for call in calls:
        for _ in range(warmup):
            call()
    times = [[] for _ in calls]
    for _ in range(requests):
        for call, out in zip(calls, times):
            start = time.perf_counter()
            call()
            out.append((time.perf_counter() - start) * 1e3)
    return [np.array(t) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mbt-tiny")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="per mode and client count, split over 3 alternating rounds")
    parser.add_argument("--intra-op", type=int, default=0,
                        help="--tensorflow-intra-op-parallelism of both servers and in-process "
                             "(default 0: TensorFlow's, one thread per core)")
    parser.add_argument("--inter-op", type=int, default=0,
                        help="--tensorflow-inter-op-parallelism, likewise")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    threads = ["--tensorflow-intra-op-parallelism", str(args.intra_op),
               "--tensorflow-inter-op-parallelism", str(args.inter_op)]

    config = from_preset(args.preset)
    seconds = config.spec_frames / 100
    inputs = clip_inputs(CLIP, num_frames=config.num_frames, seconds=seconds)
    with tempfile.TemporaryDirectory() as base:
        export_dir = export_saved_model(build_model(config), config,
                                        [f"class_{i}" for i in range(sum(config.num_classes))],
                                        os.path.join(base, "mbt", "1"))
        signature = tf.saved_model.load(export_dir).signatures["serving_default"]

        def in_process():
            outputs = signature(**{k: tf.constant(v) for k, v in inputs.items()})
            return {k: v.numpy() for k, v in outputs.items()}

        process, target = start_server(base, *threads)
        batching, batching_target = start_server(base, *threads, *BATCHING)
        try:
            client = PredictClient(target)
            local, remote = latencies_ms([in_process, lambda: client.predict(inputs)],
                                         args.requests)
            for server in (client, PredictClient(batching_target)):
                np.testing.assert_allclose(server.predict(inputs)[0]["scores"],
                                           in_process()["scores"], atol=1e-5)
                server.close()
            loads = throughput({"unbatched": target, "batching": batching_target},
                               predict_request(inputs, "mbt"), args.seconds)
        finally:
            for server in (process, batching):
                server.terminate()
                server.wait(timeout=30)

    print(f"{args.preset}, batch 1, {config.num_frames} JPEG frames "
          f"+ {seconds:.2f} s of 16 kHz audio from a real clip, "
          f"{args.requests} interleaved requests each after 5 warm-up; TensorFlow threads "
          f"intra-op {args.intra_op or 'default'}, inter-op {args.inter_op or 'default'}")
    print(f"{'path':<28}{'p50 (ms)':>10}{'p99 (ms)':>10}")
    for name, times in (("in-process SavedModel", local), ("gRPC Predict (our server)", remote)):
        print(f"{name:<28}{np.percentile(times, 50):>10.2f}{np.percentile(times, 99):>10.2f}")
    ratio = np.percentile(remote, 50) / np.percentile(local, 50)
    print(f"gRPC / in-process at p50: {ratio:.2f}x (target <= 1.2x)")
    print(f"\nconcurrent gRPC clients, one clip per request, {args.seconds:g} s per row in 3 "
          f"alternating rounds; batching: {' '.join(BATCHING)}")
    print(f"{'server':<12}{'clients':>8}{'req/s':>10}{'p50 (ms)':>10}{'p99 (ms)':>10}")
    for (mode, clients), (rate, p50, p99) in sorted(loads.items(), key=lambda kv: kv[0][1]):
        print(f"{mode:<12}{clients:>8}{rate:>10.1f}{p50:>10.2f}{p99:>10.2f}")
    print(f"batching_throughput_ratio="
          f"{loads[('batching', CLIENTS)][0] / loads[('unbatched', CLIENTS)][0]:.2f}")


if __name__ == "__main__":
    main()
