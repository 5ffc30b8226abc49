"""Cloud settings written once (pipeline/settings.py): the Dataflow worker image and options
that every Dataflow job gets, and absolute local paths."""
import argparse
import os

import pytest
import yaml
from apache_beam.options.pipeline_options import (DebugOptions, SetupOptions,
                                                  StandardOptions, WorkerOptions)

from kubeflow import compile as kfp_compile
from pipeline import preprocess_cli
from pipeline.cli import main as mbt_main
from pipeline.settings import (LOCAL_RUNNER, PipelineSettings, absolute, dataflow_beam_args,
                               with_worker_image)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = "gcr.io/my-project/mbt-pipeline:latest"
# docs/cloud.md, step 2: the preprocessing job on Dataflow, workers on the pipeline image.
DATAFLOW_PREPROCESS = [
    "--labels", "gs://my-bucket/labels.csv", "--videos", "gs://my-bucket/clips",
    "--out", "gs://my-bucket/records", "--image", IMAGE,
    "--beam-arg=--runner=DataflowRunner", "--beam-arg=--project=my-project",
    "--beam-arg=--region=us-central1", "--beam-arg=--temp_location=gs://my-bucket/tmp"]
# A cloud run reads its inputs from a bucket (local paths are refused).
CLOUD_DATA = PipelineSettings(videos="gs://b/clips", labels="gs://b/labels.csv",
                              class_map="gs://b/class_map.csv")


def _preprocess_options(argv):
    parser = argparse.ArgumentParser()
    preprocess_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    return preprocess_cli.beam_options(args.workers, args.beam_arg, args.processes, args.image)


def test_mbt_preprocess_on_dataflow_runs_its_workers_on_the_pipeline_image():
    options = _preprocess_options(DATAFLOW_PREPROCESS)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(WorkerOptions).sdk_container_image == IMAGE
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    assert options.view_as(SetupOptions).sdk_location == "container"
    assert options.view_as(SetupOptions).save_main_session is False


def test_local_runs_keep_the_fn_api_runner_and_get_no_worker_image():
    options = _preprocess_options(["--labels", "l.csv", "--videos", "v", "--out", "o"])
    assert options.view_as(StandardOptions).runner == LOCAL_RUNNER.split("=")[1]
    assert options.view_as(WorkerOptions).sdk_container_image is None
    assert with_worker_image([LOCAL_RUNNER], IMAGE) == (LOCAL_RUNNER,)


def test_dataflow_without_an_image_is_refused_before_anything_runs(tmp_path, capsys):
    assert mbt_main(["preprocess", "--labels", str(tmp_path / "none.csv"), "--videos", ".",
                     "--out", str(tmp_path / "out"), "--beam-arg=--runner=DataflowRunner"]) == 2
    assert capsys.readouterr().err.startswith("mbt preprocess: error: --runner=DataflowRunner "
                                              "needs the pipeline image")
    assert not (tmp_path / "out").exists()


def test_every_beam_step_of_a_pipeline_on_dataflow_gets_the_image():
    """`mbt pipeline run --beam-arg=--runner=DataflowRunner --image ...`: LocalDagRunner
    orchestrating, Dataflow executing; the ExampleGen's own Beam args included."""
    from pipeline.pipeline import create_pipeline
    dataflow = ("--runner=DataflowRunner", "--project=p", "--temp_location=gs://b/tmp")
    settings = PipelineSettings(class_map=None, beam_args=dataflow, decode_beam_args=dataflow,
                                image=IMAGE)
    pipeline = create_pipeline(settings)
    example_gen = next(c for c in pipeline.components if c.id == "ClipExampleGen")
    for args in (pipeline.beam_pipeline_args, example_gen.executor_spec.beam_pipeline_args):
        assert f"--sdk_container_image={IMAGE}" in args and "--sdk_location=container" in args
    with pytest.raises(ValueError, match="--image"):
        create_pipeline(settings.replace(image=None))


def test_compiling_for_dataflow_needs_a_real_image(tmp_path, capsys):
    assert mbt_main(["pipeline", "compile", "--out", str(tmp_path / "x.json"), "--bucket",
                     "gs://b", "--project", "p"]) == 2
    assert capsys.readouterr().err.startswith("mbt pipeline compile: error: --image: ")


def test_options_the_user_gives_win_and_are_not_doubled():
    args = with_worker_image(["--runner=dataflow", "--sdk_container_image=other:1",
                              "--save_main_session", "--experiments=shuffle_mode=service"],
                             IMAGE)
    assert [a for a in args if a.startswith("--sdk_container_image")] == [
        "--sdk_container_image=other:1"]
    assert "--no_save_main_session" not in args
    assert "--experiments=use_runner_v2" in args and "--experiments=shuffle_mode=service" in args


def test_the_compiled_pipeline_and_mbt_preprocess_share_one_set_of_dataflow_args():
    beam = dataflow_beam_args(project="p", region="r", temp_location="gs://b/tmp", image=IMAGE)
    assert beam == ("--runner=DataflowRunner", "--project=p", "--region=r",
                    "--temp_location=gs://b/tmp", f"--sdk_container_image={IMAGE}",
                    "--experiments=use_runner_v2", "--sdk_location=container",
                    "--no_save_main_session")
    settings = kfp_compile.cloud_settings(CLOUD_DATA, target="vertex", bucket="gs://b",
                                          project="p", region="r", image=IMAGE)
    assert settings.beam_args == dataflow_beam_args(
        project="p", region="r", temp_location="gs://b/mbt/tmp", image=IMAGE)


def test_local_paths_become_absolute_and_uris_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute("out/serving") == str(tmp_path / "out" / "serving")
    assert absolute("gs://b/serving") == "gs://b/serving"
    settings = PipelineSettings(pipeline_root="out/root", metadata_path="out/m.sqlite",
                                labels="gs://b/labels.csv", class_map=None).absolute()
    assert settings.pipeline_root == str(tmp_path / "out" / "root")
    assert settings.metadata_path == str(tmp_path / "out" / "m.sqlite")
    assert settings.push_dir == str(tmp_path / "out" / "serving" / "mbt")
    assert settings.labels == "gs://b/labels.csv" and settings.class_map is None


def test_tf_serving_manifest_reads_where_the_compiled_pusher_writes():
    """docs/cloud.md, last step: kubeflow/tf_serving.yaml serves the Pusher's folder."""
    with open(os.path.join(REPO, "kubeflow", "tf_serving.yaml")) as f:
        deployment = next(yaml.safe_load_all(f))
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    base = next(a.split("=", 1)[1] for a in container["args"]
                if a.startswith("--model_base_path="))
    settings = kfp_compile.cloud_settings(CLOUD_DATA, target="vertex",
                                          bucket="gs://BUCKET", project="p", image=IMAGE)
    assert base == settings.push_dir
