"""Where `mbt report` looks for a run's ML Metadata, and a run without one (e.g. on Vertex)."""
import os

from pipeline import run_record
from pipeline.settings import PipelineSettings


def test_the_store_is_looked_for_where_the_settings_put_it_beside_the_root(tmp_path):
    defaults = PipelineSettings()
    root = tmp_path / "out" / os.path.basename(defaults.pipeline_root)
    assert run_record.default_metadata_path(str(root)) == str(
        tmp_path / "out" / os.path.basename(defaults.metadata_path))


def test_a_run_without_a_store_records_nothing_and_flags_decide(tmp_path):
    (tmp_path / "pipeline_root" / "Trainer").mkdir(parents=True)
    assert run_record.read(str(tmp_path / "pipeline_root")) == run_record.RunRecord()
