"""The Kubeflow/Vertex spec compiles offline and parses into the KFP and Vertex protos; the
Dataflow workers' image and options and the Trainer's Vertex machine are checked field by
field where Vertex and Dataflow read them."""
import argparse
import json
import os
import subprocess
import sys

import pytest
from google.protobuf import json_format

from kubeflow import compile as kfp_compile
from pipeline import pipeline_cli
from pipeline.cli import main as mbt_main
from pipeline.settings import PipelineSettings, TrainerMachine, with_class_count

# KFP v2 compiles the latest-blessed-model Resolver into two resolver tasks.
EXPECTED_NODES = {"ClipExampleGen", "StatisticsGen", "SchemaGen", "SchemaCurator",
                  "ExampleValidator", "Trainer",
                  "latest_blessed_model_resolver-model-resolver",
                  "latest_blessed_model_resolver-model-blessing-resolver", "Evaluator", "Pusher"}
IMAGE = "gcr.io/test-project/mbt-pipeline:1"
BEAM_COMPONENTS = ("ClipExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Evaluator")
# Flags of the walk-through in docs/cloud.md, step 2 (GPU Trainer).
GPU_FLAGS = ["--trainer-machine-type", "a2-highgpu-2g",
             "--trainer-accelerator-type", "NVIDIA_TESLA_A100",
             "--trainer-accelerator-count", "2"]
# Where a cloud run's steps read the data (local paths are refused).
CLOUD_DATA = ["--videos", "gs://b/clips", "--labels", "gs://b/labels.csv"]
CLOUD_SETTINGS = PipelineSettings(videos="gs://b/clips", labels="gs://b/labels.csv",
                                  class_map="gs://b/class_map.csv")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compiled through the installed `mbt` console script, as a user runs it."""
    out = tmp_path_factory.mktemp("kfp") / "mbt.json"
    mbt = os.path.join(os.path.dirname(sys.executable), "mbt")
    done = subprocess.run(
        [mbt, "pipeline", "compile", "--target", "vertex", "--out", str(out), "--image", IMAGE,
         "--bucket", "gs://test-bucket", "--project", "test-project", "--region", "europe-west4",
         "--preset", "mbt-tiny", "--set", "fusion_layer=1", "--set", "num_classes=6",
         "--epochs", "7",
         "--data", "gs://test-bucket/clips", "--labels", "gs://test-bucket/labels.csv",
         "--class-map", "gs://test-bucket/class_map.csv", *GPU_FLAGS],
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


def test_submit_arguments_are_checked_before_any_cloud_call(capsys):
    # region/bucket missing: argparse's usage error
    assert mbt_main(["pipeline", "submit", "spec.json", "--project", "p"]) == 2
    assert mbt_main(["pipeline", "submit", "spec.json", "--project", "p", "--region", "r",
                     "--bucket", "/tmp/not-a-bucket"]) == 2
    assert capsys.readouterr().err.endswith(
        "mbt pipeline submit: error: --bucket '/tmp/not-a-bucket': expected a gs:// URI\n")


def test_settings_from_flags_round_trip():
    parser = argparse.ArgumentParser()
    pipeline_cli.add_settings_arguments(parser)
    args = parser.parse_args(["--preset", "mbt-small", "--set", "num_bottlenecks=8",
                              "--set", "fusion=cross", "--min-metric", "0.4",
                              "--beam-arg=--direct_num_workers=4"])
    settings = pipeline_cli.settings_from_args(args)
    assert settings.overrides == {"num_bottlenecks": 8, "fusion": "cross"}
    assert settings.min_metric == 0.4
    assert settings.beam_args == ("--direct_num_workers=4",)


def test_label_encoding_damage_threshold_and_frame_rate_reach_the_components_that_read_them(
        tmp_path):
    from pipeline.pipeline import create_pipeline
    parser = argparse.ArgumentParser()
    pipeline_cli.add_settings_arguments(parser)
    class_map = tmp_path / "class_map.csv"
    class_map.write_bytes("index,name\n0,caf\u00e9\n1,th\u00e9\n2,eau\n".encode("latin-1"))
    settings = with_class_count(pipeline_cli.settings_from_args(parser.parse_args(
        ["--encoding", "latin-1", "--max-damaged-fraction", "0.1", "--class-map", str(class_map),
         "--fps", "5", "--pipeline-root", str(tmp_path)])))
    assert settings.overrides == {"num_classes": 3}
    components = {c.id: c for c in create_pipeline(settings).components}
    preprocess = json.loads(components["ClipExampleGen"].exec_properties["preprocess_config"])
    assert (preprocess["encoding"], preprocess["max_damaged_fraction"]) == ("latin-1", 0.1)
    assert preprocess["fps"] == 5
    assert components["SchemaCurator"].exec_properties["encoding"] == "latin-1"
    trainer = json.loads(components["Trainer"].exec_properties["custom_config"])
    assert trainer["encoding"] == "latin-1"
    default = create_pipeline(PipelineSettings(pipeline_root=str(tmp_path)))
    [example_gen] = [c for c in default.components if c.id == "ClipExampleGen"]
    assert "max_damaged_fraction" not in example_gen.exec_properties["preprocess_config"]
    assert json.loads(example_gen.exec_properties["preprocess_config"])["fps"] == 25  # mbt-tiny


@pytest.mark.parametrize("flags, fps", [([], 5), (["--fps", "25"], 25)])
def test_stored_frame_rate_follows_the_presets_sampling_unless_given(flags, fps, tmp_path):
    """mbt-b16's 8 frames over 8 s take one frame a second: the pipeline stores 5 fps unless
    told otherwise."""
    from pipeline.pipeline import create_pipeline
    parser = argparse.ArgumentParser()
    pipeline_cli.add_settings_arguments(parser)
    settings = pipeline_cli.settings_from_args(parser.parse_args(
        ["--preset", "mbt-b16", "--pipeline-root", str(tmp_path)] + flags))
    [example_gen] = [c for c in create_pipeline(settings).components if c.id == "ClipExampleGen"]
    assert json.loads(example_gen.exec_properties["preprocess_config"])["fps"] == fps


def _executor_args(compiled, node):
    return compiled["pipelineSpec"]["deploymentSpec"]["executors"][f"{node}_executor"][
        "container"]["args"]


def _task_parameter(compiled, node, name):
    parameter = compiled["pipelineSpec"]["root"]["dag"]["tasks"][node]["inputs"]["parameters"]
    return parameter[name]["runtimeValue"]["constantValue"]["stringValue"]


@pytest.mark.parametrize("node", BEAM_COMPONENTS)
def test_every_beam_component_runs_dataflow_workers_on_the_pipeline_image(compiled, node):
    args = _executor_args(compiled, node)
    for expected in (f"--sdk_container_image={IMAGE}", "--experiments=use_runner_v2",
                     "--sdk_location=container", "--no_save_main_session",
                     "--temp_location=gs://test-bucket/mbt/tmp"):
        assert args.count(expected) == 1, (node, expected, args)


def _worker_pool(compiled):
    """The Trainer's CustomJobSpec, parsed by Vertex's own proto (aiplatform_v1)."""
    from google.cloud.aiplatform_v1.types import CustomJobSpec
    config = json.loads(_task_parameter(compiled, "Trainer", "custom_config"))
    training = config["ai_platform_training_args"]
    spec = CustomJobSpec.from_json(json.dumps(training["job_spec"]),
                                   ignore_unknown_fields=False)
    [pool] = spec.worker_pool_specs
    return config, training, pool


def test_trainer_runs_as_a_vertex_custom_job_on_the_requested_gpus(compiled):
    config, training, pool = _worker_pool(compiled)
    assert _executor_args(compiled, "Trainer")[1] == (
        "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor")
    assert config["ai_platform_enable_vertex"] is True
    assert config["ai_platform_vertex_region"] == "europe-west4"
    assert training["project"] == "test-project"
    assert pool.machine_spec.machine_type == "a2-highgpu-2g"
    assert pool.machine_spec.accelerator_type.name == "NVIDIA_TESLA_A100"
    assert pool.machine_spec.accelerator_count == 2
    assert pool.replica_count == 1
    assert pool.container_spec.image_uri == IMAGE
    # Two GPUs on one machine: no TPU address, so mbt_keras.strategy picks MirroredStrategy.
    assert "tpu" not in config and config["preset"] == "mbt-tiny"


def test_a_tpu_trainer_gets_the_tpu_vm_spec_and_trains_with_tpu_strategy(tmp_path):
    machine = TrainerMachine(machine_type="ct5lp-hightpu-4t", accelerator_type="TPU_V5_LITEPOD",
                             accelerator_count=4, tpu_topology="2x2")
    settings = kfp_compile.cloud_settings(
        CLOUD_SETTINGS, target="vertex", bucket="gs://b",
        project="p", region="us-central1", image=IMAGE, trainer_machine=machine)
    out = kfp_compile.compile_pipeline(settings, str(tmp_path / "tpu.json"), image=IMAGE)
    compiled = json.loads(open(out).read())
    config, _, pool = _worker_pool(compiled)
    assert (pool.machine_spec.machine_type, pool.machine_spec.accelerator_type.name,
            pool.machine_spec.accelerator_count, pool.machine_spec.tpu_topology) == (
        "ct5lp-hightpu-4t", "TPU_V5_LITEPOD", 4, "2x2")
    assert pool.container_spec.image_uri == IMAGE
    # run_fn passes it to make_strategy: TPUClusterResolver(tpu="local") -> TPUStrategy.
    assert config["tpu"] == "local"


def test_without_trainer_flags_the_trainer_stays_in_its_pipeline_step(tmp_path):
    settings = kfp_compile.cloud_settings(CLOUD_SETTINGS, target="vertex", bucket="gs://b",
                                          project="p", image=IMAGE)
    out = kfp_compile.compile_pipeline(settings, str(tmp_path / "plain.json"), image=IMAGE)
    compiled = json.loads(open(out).read())
    assert _executor_args(compiled, "Trainer")[1] == "tfx.components.trainer.executor.GenericExecutor"
    assert "ai_platform_training_args" not in _task_parameter(compiled, "Trainer", "custom_config")


@pytest.mark.parametrize("flags, message", [
    (["--trainer-accelerator-type", "NVIDIA_L4"], "accelerator-count"),
    (["--trainer-accelerator-count", "2"], "accelerator-type"),
    (["--trainer-tpu-topology", "2x2", "--trainer-accelerator-type", "NVIDIA_L4",
      "--trainer-accelerator-count", "1"], "TPU"),
])
def test_inconsistent_trainer_flags_are_refused_naming_the_flag(flags, message, tmp_path,
                                                                capsys):
    assert mbt_main(["pipeline", "compile", "--out", str(tmp_path / "x.json"), "--bucket",
                     "gs://b", "--project", "p", *flags]) == 2
    assert message in capsys.readouterr().err


def test_trainer_machine_needs_vertex_and_a_project(tmp_path, capsys):
    assert mbt_main(["pipeline", "compile", "--out", str(tmp_path / "x.json"), "--bucket",
                     "gs://b", *GPU_FLAGS]) == 2
    assert "--project" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_every_executor_class_the_spec_names_is_importable_from_the_package(compiled):
    """The steps import their executors by path in the pipeline image; the SchemaCurator's
    is generated by TFX's component decorator and must be a module attribute."""
    import importlib
    executors = compiled["pipelineSpec"]["deploymentSpec"]["executors"]
    paths = {e["container"]["args"][1] for e in executors.values() if "container" in e}
    assert "components.schema_curator.SchemaCurator_Executor" in paths
    for path in paths:
        module, name = path.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), path


def _demo_class_map(folder) -> str:
    """The demo's class map where compile may read it: on a file system URI (ram://, in this
    process, standing in for gs://)."""
    from components.preprocess.label_files import write_class_map
    from pipeline.demo_data import CLASSES
    path = f"ram://{folder}/class_map.csv"
    write_class_map({name: index for index, name in enumerate(CLASSES)}, path)
    return path


def _sizes(eval_config_json: str, trainer_config: dict):
    """The class count the Evaluator's metrics cover (its PR curves' class ids: every class
    of a head this small) and the one the Trainer builds its head with."""
    from tensorflow_model_analysis.proto import config_pb2
    evaluation = json_format.Parse(eval_config_json, config_pb2.EvalConfig())
    [class_ids] = [list(spec.binarize.class_ids.values) for spec in evaluation.metrics_specs
                   if spec.binarize.class_ids.values]
    assert class_ids == list(range(len(class_ids)))
    return len(class_ids), trainer_config["overrides"]["num_classes"]


def _compiled_sizes(compiled):
    return _sizes(_task_parameter(compiled, "Evaluator", "eval_config"),
                  json.loads(_task_parameter(compiled, "Trainer", "custom_config")))


def test_num_classes_flag_sizes_the_spec_whose_class_map_only_the_cloud_reads(compiled):
    """The fixture's class map is on gs://, unreadable here: compile takes --set num_classes
    instead of the preset's 8 classes (mbt-tiny)."""
    assert _compiled_sizes(compiled) == (6, 6)


def test_compile_sizes_the_trainer_and_the_evaluator_by_the_class_map_as_run_does(tmp_path):
    """The demo's class map has 6 classes, mbt-micro's head 4: the compiled spec's Evaluator
    covers and its Trainer trains the class map's 6, and `mbt pipeline run` with the same
    flags builds the same Evaluator and Trainer configuration."""
    from pipeline.pipeline import create_pipeline
    flags = ["--preset", "mbt-micro", "--class-map", _demo_class_map(tmp_path),
             "--pipeline-root", str(tmp_path / "root"), *CLOUD_DATA]
    out = tmp_path / "spec.json"
    assert mbt_main(["pipeline", "compile", "--out", str(out), "--bucket", "gs://b",
                     *flags]) == 0
    compiled = json.loads(out.read_text())
    assert _compiled_sizes(compiled) == (6, 6)

    parser = argparse.ArgumentParser()
    pipeline_cli.add_arguments(parser)
    run_settings = pipeline_cli.counted(pipeline_cli.settings_from_args(
        parser.parse_args(["run", *flags])))
    components = {c.id: c for c in create_pipeline(run_settings).components}
    run_evaluation = components["Evaluator"].exec_properties["eval_config"]
    assert run_evaluation == _task_parameter(compiled, "Evaluator", "eval_config")
    run_trainer = json.loads(components["Trainer"].exec_properties["custom_config"])
    compiled_trainer = json.loads(_task_parameter(compiled, "Trainer", "custom_config"))
    assert run_trainer["overrides"] == compiled_trainer["overrides"] == {"num_classes": 6}


def test_compile_refuses_a_class_map_it_cannot_read_naming_it_and_the_flag(tmp_path, capsys):
    missing = f"ram://{tmp_path}/nowhere/class_map.csv"
    out = tmp_path / "spec.json"
    assert mbt_main(["pipeline", "compile", "--out", str(out), "--bucket", "gs://b",
                     "--class-map", missing, *CLOUD_DATA]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"mbt pipeline compile: error: --class-map: cannot read {missing}")
    assert line.endswith("give the count with --set num_classes=N")
    assert not out.exists()


def test_compile_refuses_local_inputs_in_one_line_naming_each_flag(tmp_path, capsys):
    """A cloud Trainer cannot read the laptop's ViT checkpoint, nor the ExampleGen its videos:
    compile says so before it writes a spec, not the Trainer after hours of provisioning."""
    out = tmp_path / "spec.json"
    npz = str(tmp_path / "ViT-B_16.npz")
    assert mbt_main(["pipeline", "compile", "--out", str(out), "--bucket", "gs://b",
                     "--videos", "gs://b/clips", "--labels", str(tmp_path / "labels.csv"),
                     "--class-map", "gs://b/class_map.csv", "--pretrained", npz]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"mbt pipeline compile: error: --labels {tmp_path}/labels.csv "
                           f"--pretrained {npz}: local paths, which the compiled pipeline's "
                           "steps cannot read")
    assert line.endswith("give the gs:// URI")
    assert not out.exists()
