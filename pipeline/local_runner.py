"""Run the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

Local paths are made absolute first, so every URI the metadata store records (artifacts, the
push destination) resolves from any working directory."""
import os

from tfx import v1 as tfx

from pipeline.pipeline import create_pipeline
from pipeline.settings import PipelineSettings


def run_local(settings: PipelineSettings) -> PipelineSettings:
    """Runs the pipeline; returns the settings it ran with (paths absolute)."""
    settings = settings.absolute()
    os.makedirs(os.path.dirname(os.path.abspath(settings.metadata_path)), exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(settings.metadata_path)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(settings, metadata))
    return settings
