"""Compile the pipeline for Kubeflow Pipelines 2.x / Vertex AI Pipelines (KubeflowV2DagRunner).

TFX 1.16 ships only the KFP v2 runner; its PipelineJob JSON runs on both targets. On
Vertex the Beam components run on Dataflow, so the Beam arguments switch to DataflowRunner.
"""
import os
from typing import Optional

from tfx import v1 as tfx

from pipeline.pipeline import create_pipeline
from pipeline.settings import PipelineSettings

TARGETS = ("vertex", "kubeflow")
DEFAULT_IMAGE = "gcr.io/YOUR_PROJECT/mbt-pipeline:latest"


def dataflow_beam_args(project: str, region: str, temp_location: str) -> tuple:
    return ("--runner=DataflowRunner", f"--project={project}", f"--region={region}",
            f"--temp_location={temp_location}", "--experiments=use_runner_v2")


def cloud_settings(settings: PipelineSettings, *, target: str, bucket: str,
                   project: Optional[str] = None, region: str = "us-central1") -> PipelineSettings:
    """The same pipeline with cloud paths; Dataflow for Beam where a project is known."""
    if target not in TARGETS:
        raise ValueError(f"--target {target!r}: expected one of {TARGETS}")
    if not bucket.startswith("gs://"):
        raise ValueError(f"--bucket {bucket!r}: expected a gs:// URI")
    root = f"{bucket.rstrip('/')}/{settings.pipeline_name}"
    changes = dict(pipeline_root=f"{root}/pipeline_root", metadata_path=None,
                   serving_base=f"{root}/serving")
    if project:
        beam = dataflow_beam_args(project, region, f"{root}/tmp")
        # Pipeline-level args reach every Beam component, the ExampleGen included.
        changes.update(beam_args=beam, decode_beam_args=())
    return settings.replace(**changes)


def compile_pipeline(settings: PipelineSettings, out_file: str, *, image: str = DEFAULT_IMAGE) -> str:
    """Write the PipelineJob JSON to `out_file` and return its path."""
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(out_file)),
        output_filename=os.path.basename(out_file))
    runner.run(create_pipeline(settings))
    return out_file
