"""Two real worker processes on localhost train mbt-micro under MultiWorkerMirroredStrategy
and end with the weights of a single-process run on the same global batch; both evaluate,
each its share of the clips, and report the single process's metrics."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(model_dir, out, tf_config=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, "-m", "tests.mbt_keras.multi_worker_job",
                             str(model_dir), str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process):
    try:
        output, _ = process.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    assert process.returncode == 0, output[-3000:]


def _weights(path):
    data = np.load(path)
    return data, [data[f"arr_{i}"] for i in range(len(data.files) - 4)]


def test_two_workers_match_each_other_and_a_single_process(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    workers = [_start(tmp_path / "multi", tmp_path / f"worker{i}.npz",
                      {"cluster": cluster, "task": {"type": "worker", "index": i}})
               for i in range(2)]
    single = _start(tmp_path / "single", tmp_path / "single.npz")
    for process in workers + [single]:
        _finish(process)

    (w0_meta, w0), (w1_meta, w1), (single_meta, ref) = (
        _weights(tmp_path / name) for name in ("worker0.npz", "worker1.npz", "single.npz"))
    assert int(w0_meta["replicas"]) == 2 and int(single_meta["replicas"]) == 1
    assert len(w0) == len(ref) > 10
    for a, b, c in zip(w0, w1, ref):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)
    assert float(w0_meta["loss"]) == float(w1_meta["loss"])
    np.testing.assert_allclose(float(w0_meta["loss"]), float(single_meta["loss"]), rtol=1e-5)
    # Both workers evaluated (worker 1 too: it does not wait in the next step's collective
    # while the chief evaluates alone) and gathered the single process's metric.
    assert 0.0 < float(single_meta["val_mAP"]) < 1.0
    assert float(w0_meta["val_mAP"]) == float(w1_meta["val_mAP"])
    np.testing.assert_allclose(float(w0_meta["val_mAP"]), float(single_meta["val_mAP"]),
                               rtol=1e-6)
    # Training moved the weights away from the shared initialisation.
    assert float(single_meta["moved"]) > 1e-3
    # Only the chief (worker 0) keeps checkpoints; worker 1's scratch copy is removed.
    assert sorted(os.listdir(tmp_path / "multi")) == ["checkpoints", "logs"]
