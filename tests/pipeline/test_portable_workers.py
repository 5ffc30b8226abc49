"""`mbt preprocess` on Beam's portable machinery with SDK workers in other processes, as on
Dataflow: the PortableRunner with the embedded job service and an EXTERNAL worker pool
(`apache_beam.runners.worker.worker_pool_main`), started apart from the launcher in a clean
working directory and importing this project as an installed package. Whatever relied on the
launcher's memory instead of the package would fail here.

The pool runs twice: on this stack's environment with the checkout as the package, and in the
image's (tests/kubeflow/image_env.py: kubeflow/Dockerfile's steps, the package installed, no
checkout), where Dataflow's workers would run; the latter stands in for the image's
`/opt/apache/beam/boot --worker_pool` (docs/cloud.md says what it leaves out)."""
import glob
import os
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from mbt_keras import contract
from tests.components.conftest import write_clip

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOOD = {"w0": (2.0, "a"), "w1": (2.5, "b"), "w2": (3.0, "a"), "w3": (1.5, "b")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "the worker pool exited"
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"worker pool not listening on {port}")


def _env(python_path: str) -> dict:
    """The venv's python first on PATH (the pool starts workers as `python`), and the
    package importable as installed (PYTHONPATH: the repository root only)."""
    env = dict(os.environ, PYTHONPATH=python_path)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture(scope="module", params=["checkout", "image"])
def workers(request):
    """The workers' Python and environment: this stack's with the checkout as the package, or
    the image's (which skips where this stack is not the image's)."""
    if request.param == "image":
        image = request.getfixturevalue("image")
        return image.python, image.env()
    return sys.executable, _env(REPO)


@pytest.fixture(scope="module")
def worker_pool(workers, tmp_path_factory):
    """An external SDK worker pool in its own process and clean working directory; every
    worker it starts is another process. Its output (the workers' too) goes to a log."""
    python, env = workers
    cwd = tmp_path_factory.mktemp("worker_cwd")
    log = open(cwd / "worker_pool.log", "w")
    port = _free_port()
    pool = subprocess.Popen(
        [python, "-m", "apache_beam.runners.worker.worker_pool_main",
         f"--service_port={port}"], cwd=cwd, env=env, stdout=log,
        stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, pool)
        yield dict(address=f"localhost:{port}", log=cwd / "worker_pool.log", pid=pool.pid)
    finally:
        pool.terminate()
        pool.wait(timeout=30)
        log.close()


def _portable_args(address: str) -> list:
    return ["--beam-arg=--runner=PortableRunner", "--beam-arg=--job_endpoint=embed",
            "--beam-arg=--environment_type=EXTERNAL",
            f"--beam-arg=--environment_config={address}"]


@pytest.fixture(scope="module")
def job(worker_pool, tmp_path_factory):
    root = tmp_path_factory.mktemp("portable")
    rows = ["clip_id,path,labels,split"]
    for clip_id, (seconds, label) in GOOD.items():
        write_clip(str(root / f"{clip_id}.mp4"), seconds, size=(48, 32))
        rows.append(f"{clip_id},{clip_id}.mp4,{label},{'eval' if clip_id == 'w3' else 'train'}")
    (root / "notes.mp4").write_text("not a video\n")
    rows.append("broken,notes.mp4,a,train")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "class_map.csv").write_text("index,name\n0,a\n1,b\n")
    out = root / "records"
    launcher = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "mbt"), "preprocess",
         "--labels", "labels.csv", "--videos", ".", "--class-map", "class_map.csv",
         "--out", "records", "--short-side", "32", "--workers", "1",
         *_portable_args(worker_pool["address"])],
        cwd=root, env=_env(REPO), capture_output=True, text=True, timeout=600)
    return dict(launcher=launcher, out=out, root=root)


def test_the_job_runs_on_external_sdk_workers_and_accounts_for_every_clip(job, worker_pool):
    launcher = job["launcher"]
    assert launcher.returncode == 0, launcher.stderr[-3000:]
    assert "read 5 = written 4 + rejected 1" in launcher.stdout
    assert "rejected not_a_video: 1" in launcher.stdout
    # The DoFns ran in a worker process the pool started, not in the launcher: the
    # per-clip progress lines they print never reach the launcher's output.
    assert "Starting worker with command" in worker_pool["log"].read_text()
    assert "[written]" not in launcher.stdout and "[rejected]" not in launcher.stdout


LAUNCHER_ONLY_MODULE = """
import apache_beam as beam

class Double(beam.DoFn):
    def process(self, x):
        yield 2 * x
"""

LAUNCHER = """
import sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from launcher_only import Double
with beam.Pipeline(options=PipelineOptions(sys.argv[1:])) as p:
    _ = p | beam.Create([1, 2]) | beam.ParDo(Double())
"""


def test_code_only_the_launcher_can_import_fails_on_the_workers(worker_pool, tmp_path):
    """The control: a DoFn from a module on the launcher's path but not in the installed
    package is pickled by reference and cannot be loaded by the workers."""
    (tmp_path / "launcher_only.py").write_text(LAUNCHER_ONLY_MODULE)
    (tmp_path / "launch.py").write_text(LAUNCHER)
    args = [a.split("=", 1)[1] for a in _portable_args(worker_pool["address"])]
    done = subprocess.run([sys.executable, "launch.py", *args], cwd=tmp_path,
                          env=_env(f"{REPO}{os.pathsep}{tmp_path}"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    assert "No module named 'launcher_only'" in done.stderr + done.stdout


def test_the_records_written_by_the_workers_are_complete(job):
    examples = {}
    for split in ("train", "eval"):
        files = glob.glob(str(job["out"] / f"Split-{split}" / "data_tfrecord-*"))
        for record in tf.data.TFRecordDataset(files):
            example = tf.train.SequenceExample.FromString(record.numpy())
            clip_id = example.context.feature[contract.CLIP_ID].bytes_list.value[0].decode()
            examples[clip_id] = (split, example)
    assert set(examples) == set(GOOD)
    assert examples["w3"][0] == "eval"
    for clip_id, (seconds, label) in GOOD.items():
        example = examples[clip_id][1]
        context, lists = example.context.feature, example.feature_lists.feature_list
        assert context[contract.LABEL_TEXT].bytes_list.value == [label.encode()]
        assert len(lists[contract.IMAGE_ENCODED].feature) == int(seconds * contract.FPS)
        assert len(lists[contract.MELSPEC].feature) == int(seconds)
        # Relative --videos/--out were made absolute before anything was recorded.
        assert context[contract.VIDEO_FILENAME].bytes_list.value[0].decode() == str(
            job["root"] / f"{clip_id}.mp4")
    letters = glob.glob(str(job["out"] / "DeadLetters" / "dead_letters-*"))
    assert sum(1 for path in letters for _ in open(path)) == 1
