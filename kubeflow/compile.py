"""Compile the pipeline for Kubeflow Pipelines 2.x / Vertex AI Pipelines (KubeflowV2DagRunner).

TFX 1.16 ships only the KFP v2 runner; its PipelineJob JSON runs on both targets. With a
project the Beam components run on Dataflow, their workers on the pipeline image; with a
Trainer machine the Trainer runs as a Vertex AI custom job on that machine and image.
"""
import os
from typing import Optional

from tfx import v1 as tfx

from mbt_keras.user_error import UserError
from pipeline.pipeline import create_pipeline
from pipeline.settings import PipelineSettings, TrainerMachine, dataflow_beam_args

TARGETS = ("vertex", "kubeflow")
DEFAULT_IMAGE = "gcr.io/YOUR_PROJECT/mbt-pipeline:latest"


def cloud_settings(settings: PipelineSettings, *, target: str, bucket: str,
                   project: Optional[str] = None, region: str = "us-central1",
                   image: str = DEFAULT_IMAGE,
                   trainer_machine: Optional[TrainerMachine] = None) -> PipelineSettings:
    """The same pipeline with cloud paths; Dataflow for Beam where a project is known; the
    Trainer on its own Vertex machine where one is asked for. Inputs given as local paths
    (settings.INPUT_FLAGS) are refused: no step of a cloud run can read them."""
    if target not in TARGETS:
        raise UserError(f"--target {target!r}: expected one of {TARGETS}")
    if not bucket.startswith("gs://"):
        raise UserError(f"--bucket {bucket!r}: expected a gs:// URI")
    if trainer_machine and not (target == "vertex" and project):
        raise UserError("--trainer-machine-type/--trainer-accelerator-*: the Trainer runs as a "
                        "Vertex AI custom job, which needs --target vertex and --project")
    if (project or trainer_machine) and image == DEFAULT_IMAGE:
        raise UserError("--image: Dataflow workers and the Trainer's custom job run the "
                        "pipeline image; pass the one you built from kubeflow/Dockerfile and "
                        "pushed")
    local = settings.local_inputs()
    if local:
        raise UserError(
            " ".join(f"{flag} {path}" for flag, path in local.items())
            + (": a local path" if len(local) == 1 else ": local paths") + ", which the "
            "compiled pipeline's steps cannot read (they run in the pipeline image in the "
            "cloud, the Trainer too); copy to a bucket and give the gs:// URI")
    root = f"{bucket.rstrip('/')}/{settings.pipeline_name}"
    changes = dict(pipeline_root=f"{root}/pipeline_root", metadata_path=None,
                   serving_base=f"{root}/serving", image=image)
    if project:
        beam = dataflow_beam_args(project=project, region=region,
                                  temp_location=f"{root}/tmp", image=image)
        # Pipeline-level args reach every Beam component, the ExampleGen included.
        changes.update(beam_args=beam, decode_beam_args=())
    if trainer_machine:
        changes.update(trainer_machine=trainer_machine, vertex_project=project,
                       vertex_region=region)
    return settings.replace(**changes)


def compile_pipeline(settings: PipelineSettings, out_file: str, *, image: str = DEFAULT_IMAGE) -> str:
    """Write the PipelineJob JSON to `out_file` and return its path."""
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(out_file)),
        output_filename=os.path.basename(out_file))
    runner.run(create_pipeline(settings))
    return out_file
