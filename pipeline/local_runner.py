"""Run the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner."""
import os

from tfx import v1 as tfx

from pipeline.pipeline import create_pipeline
from pipeline.settings import PipelineSettings


def run_local(settings: PipelineSettings) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(settings.metadata_path)), exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(settings.metadata_path)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(settings, metadata))
