"""The Kubeflow/Vertex spec compiles offline and parses into the KFP protos."""
import json
import os
import subprocess
import sys

import pytest
from google.protobuf import json_format

from kubeflow import compile as kfp_compile
from pipeline import pipeline_cli
from pipeline.cli import main as mbt_main
from pipeline.settings import PipelineSettings

# KFP v2 compiles the latest-blessed-model Resolver into two resolver tasks.
EXPECTED_NODES = {"ClipExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer",
                  "latest_blessed_model_resolver-model-resolver",
                  "latest_blessed_model_resolver-model-blessing-resolver", "Evaluator", "Pusher"}
IMAGE = "gcr.io/test-project/mbt-pipeline:1"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compiled through the installed `mbt` console script, as a user runs it."""
    out = tmp_path_factory.mktemp("kfp") / "mbt.json"
    mbt = os.path.join(os.path.dirname(sys.executable), "mbt")
    done = subprocess.run(
        [mbt, "pipeline", "compile", "--target", "vertex", "--out", str(out), "--image", IMAGE,
         "--bucket", "gs://test-bucket", "--project", "test-project", "--region", "europe-west4",
         "--preset", "mbt-tiny", "--set", "fusion_layer=1", "--epochs", "7",
         "--data", "gs://test-bucket/clips", "--labels", "gs://test-bucket/labels.csv"],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_compiled_spec_parses_into_kfp_pipeline_spec(compiled):
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.ParseDict(compiled["pipelineSpec"], pipeline_spec_pb2.PipelineSpec(),
                                 ignore_unknown_fields=False)
    assert set(spec.root.dag.tasks) == EXPECTED_NODES
    executors = compiled["pipelineSpec"]["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {IMAGE}


def test_compiled_job_parses_as_a_vertex_pipeline_job(compiled):
    from google.cloud.aiplatform_v1.types import PipelineJob

    job = PipelineJob.from_json(json.dumps(compiled), ignore_unknown_fields=False)
    assert job.runtime_config.gcs_output_directory == "gs://test-bucket/mbt/pipeline_root"
    assert "Trainer" in json.dumps(compiled["pipelineSpec"]["root"]["dag"]["tasks"])


def test_compiled_spec_carries_dataflow_args_and_parameters(compiled):
    text = json.dumps(compiled)
    assert "--runner=DataflowRunner" in text
    assert "--project=test-project" in text and "--region=europe-west4" in text
    assert "gs://test-bucket/mbt/pipeline_root" == compiled["runtimeConfig"]["gcsOutputDirectory"]
    # Trainer hyperparameters travel as the custom_config of the Trainer.
    assert "fusion_layer" in text and "mbt-tiny" in text
    assert "gs://test-bucket/mbt/serving/mbt" in text  # push destination
    executors = compiled["pipelineSpec"]["deploymentSpec"]["executors"]
    example_gen_args = executors["ClipExampleGen_executor"]["container"]["args"]
    assert example_gen_args.count("--runner=DataflowRunner") == 1
    example_gen_task = json.dumps(compiled["pipelineSpec"]["root"]["dag"]["tasks"]["ClipExampleGen"])
    assert "gs://test-bucket" in example_gen_task and "gs://test-bucket/clips" in example_gen_task


def test_compile_rejects_bad_target_and_bucket():
    settings = PipelineSettings()
    with pytest.raises(ValueError, match="--target"):
        kfp_compile.cloud_settings(settings, target="airflow", bucket="gs://b")
    with pytest.raises(ValueError, match="--bucket"):
        kfp_compile.cloud_settings(settings, target="vertex", bucket="/local/dir")


def test_submit_arguments_are_checked_before_any_cloud_call():
    with pytest.raises(SystemExit):
        mbt_main(["pipeline", "submit", "spec.json", "--project", "p"])  # region/bucket missing
    with pytest.raises(SystemExit, match="gs://"):
        mbt_main(["pipeline", "submit", "spec.json", "--project", "p", "--region", "r",
                  "--bucket", "/tmp/not-a-bucket"])


def test_settings_from_flags_round_trip():
    import argparse
    parser = argparse.ArgumentParser()
    pipeline_cli.add_settings_arguments(parser)
    args = parser.parse_args(["--preset", "mbt-small", "--set", "num_bottlenecks=8",
                              "--set", "fusion=cross", "--min-metric", "0.4",
                              "--beam-arg=--direct_num_workers=4"])
    settings = pipeline_cli.settings_from_args(args)
    assert settings.overrides == {"num_bottlenecks": 8, "fusion": "cross"}
    assert settings.min_metric == 0.4
    assert settings.beam_args == ("--direct_num_workers=4",)
