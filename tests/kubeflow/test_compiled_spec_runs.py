"""The compiled Vertex spec, executed: every task by its own container command and arguments
from `deploymentSpec.executors`, with the ExecutorInput the KFP launcher would hand TFX's
Kubeflow V2 entrypoint, in an environment built by kubeflow/Dockerfile's steps (image_env.py;
spec_runner.py says what is emulated). What a first cloud run would find after minutes of
provisioning (entrypoint, arguments, a module missing from the image, a laptop-only path)
fails here, naming the task and its command."""
import csv
import json
import os
import subprocess
import sys

import pytest

from tests.kubeflow.spec_runner import SpecRefused, TaskFailed, run_spec, task_order

BUCKET = "gs://mbt-local-run"
EVAL_CLIPS = ("clip_0006", "clip_0007")


def _demo_data(folder: str) -> None:
    """Eight demo clips (one of each class and two more), the last two held out for the
    Evaluator: the demo's data at the smallest size that trains, blesses and pushes."""
    from pipeline.demo_data import make_demo_data
    make_demo_data(folder, clips=8, seed=0)
    path = os.path.join(folder, "labels.csv")
    rows = list(csv.DictReader(open(path)))
    for row in rows:
        row["split"] = "eval" if row["clip_id"] in EVAL_CLIPS else "train"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def compile_spec(out: str, *, bucket: str = BUCKET, image: str) -> str:
    """`mbt pipeline compile` as a user runs it before submitting, for the demo data in
    `bucket`; the smallest model and one epoch, every model blessed. Only the local run maps
    the bucket, so compile is given the class map's class count, as for a class map only the
    cloud can read."""
    from pipeline.demo_data import CLASSES
    mbt = os.path.join(os.path.dirname(sys.executable), "mbt")
    done = subprocess.run(
        [mbt, "pipeline", "compile", "--target", "vertex", "--out", out, "--image", image,
         "--bucket", bucket, "--data", f"{bucket}/data", "--labels", f"{bucket}/data/labels.csv",
         "--class-map", f"{bucket}/data/class_map.csv", "--set", f"num_classes={len(CLASSES)}",
         "--preset", "mbt-micro", "--epochs", "1", "--batch-size", "2", "--short-side", "40",
         "--fps", "5", "--min-metric", "0", "--train-set", "augment=false"],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bucket")
    _demo_data(str(folder / "data"))
    return str(folder)


@pytest.fixture(scope="module")
def spec_path(image, tmp_path_factory):
    out = tmp_path_factory.mktemp("spec") / "mbt_pipeline.json"
    return compile_spec(str(out), image=f"gcr.io/test-project/mbt-pipeline:{image.version}")


@pytest.fixture(scope="module")
def run(spec_path, image, bucket, tmp_path_factory):
    return run_spec(spec_path, buckets={BUCKET: bucket}, image=image,
                    log_dir=str(tmp_path_factory.mktemp("logs")))


def _local(uri: str, bucket: str) -> str:
    return uri.replace(BUCKET, bucket)


def test_every_task_of_the_spec_runs_by_its_own_command_in_the_image_environment(run,
                                                                                spec_path):
    spec = json.load(open(spec_path))
    assert set(run) == set(spec["pipelineSpec"]["root"]["dag"]["tasks"])
    assert task_order(spec)[0] == "ClipExampleGen" and task_order(spec)[-1] == "Pusher"


def test_model_blessing_and_pushed_version_are_where_the_spec_says(run, spec_path, bucket):
    spec = json.load(open(spec_path))
    root = _local(spec["runtimeConfig"]["gcsOutputDirectory"], bucket)
    [model] = run["Trainer"]["model"]
    assert model["uri"].startswith(root + os.sep)
    assert os.path.exists(os.path.join(model["uri"], "Format-Serving", "saved_model.pb"))
    [blessing] = run["Evaluator"]["blessing"]
    assert blessing["uri"].startswith(root + os.sep)
    assert blessing["metadata"]["blessed"] == 1
    assert os.path.exists(os.path.join(blessing["uri"], "BLESSED"))
    push = json.loads(spec["pipelineSpec"]["root"]["dag"]["tasks"]["Pusher"]["inputs"][
        "parameters"]["push_destination"]["runtimeValue"]["constantValue"]["stringValue"])
    base = _local(push["filesystem"]["base_directory"], bucket)
    [pushed] = run["Pusher"]["pushed_model"]
    assert pushed["metadata"]["pushed"] == 1
    version = pushed["metadata"]["pushed_version"]
    assert pushed["metadata"]["pushed_destination"] == os.path.join(base, version)
    assert os.path.exists(os.path.join(base, version, "saved_model.pb"))


def _first_task_broken(spec_path: str, out: str) -> str:
    spec = json.load(open(spec_path))
    executor = spec["pipelineSpec"]["deploymentSpec"]["executors"]["ClipExampleGen_executor"]
    args = executor["container"]["args"]
    args[args.index("--executor_class_path") + 1] = "components.not_in_the_image.Executor"
    json.dump(spec, open(out, "w"))
    return out


def test_a_failing_task_fails_the_run_naming_the_task_and_its_command(spec_path, image, bucket,
                                                                     tmp_path):
    broken = _first_task_broken(spec_path, str(tmp_path / "broken.json"))
    with pytest.raises(TaskFailed) as failed:
        run_spec(broken, buckets={BUCKET: bucket}, image=image, job_id="broken",
                 log_dir=str(tmp_path / "logs"))
    first_line = str(failed.value).splitlines()[0]
    assert first_line.startswith("task ClipExampleGen failed (exit 1): python -m "
                                 "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")
    assert "components.not_in_the_image.Executor" in first_line
    assert "No module named 'components.not_in_the_image'" in str(failed.value)
    assert not os.path.exists(os.path.join(bucket, "mbt", "pipeline_root", "broken",
                                           "StatisticsGen_2"))


@pytest.mark.parametrize("change, message", [
    (lambda s: json.loads(json.dumps(s).replace(BUCKET, "gs://someone-elses-bucket")),
     "pipeline root: gs://someone-elses-bucket/mbt/pipeline_root is in a bucket this local "
     f"run does not map (it maps {BUCKET})"),
    (lambda s: json.loads(json.dumps(s).replace("mbt-pipeline:", "mbt-pipeline:0.0.9-")),
     "task ClipExampleGen: image gcr.io/test-project/mbt-pipeline:0.0.9-"),
    (lambda s: json.loads(json.dumps(s).replace('"--runner=FnApiRunner"',
                                                '"--runner=DataflowRunner"')),
     "task ClipExampleGen: its Beam steps run on Dataflow (compile without --project)"),
], ids=["unmapped bucket", "image tag", "dataflow"])
def test_a_spec_the_local_run_cannot_stand_for_is_refused_in_one_line_before_any_task(
        change, message, spec_path, image, tmp_path):
    spec = change(json.load(open(spec_path)))
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(SpecRefused) as refused:
        run_spec(str(path), buckets={BUCKET: str(tmp_path / "bucket")}, image=image,
                 log_dir=str(tmp_path / "logs"))
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    assert not (tmp_path / "bucket").exists() and not (tmp_path / "logs").exists()
