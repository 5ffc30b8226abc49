"""Where `mbt report` looks for a run's ML Metadata, and a run without one (e.g. on Vertex)."""
import json
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


def _store(path):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config), pb


def test_the_record_is_the_runs_class_map_and_newest_push_not_another_roots(tmp_path):
    """A real SQLite store as TFX leaves it: ExampleGen's exec property, a cached re-run that
    outputs the same Examples, two pushes and a failed one, and another root's artifacts."""
    store, pb = _store(str(tmp_path / "metadata.sqlite"))
    root = tmp_path / "pipeline_root"
    (root / "Trainer").mkdir(parents=True)
    types = {name: store.put_artifact_type(pb.ArtifactType(name=name))
             for name in ("Examples", "PushedModel")}
    run_type = store.put_execution_type(pb.ExecutionType(name="run"))

    def produce(type_name, uri, execution_ids=None, config=None, **properties):
        artifact = pb.Artifact(type_id=types[type_name], uri=str(uri))
        for key, value in properties.items():
            field = "int_value" if isinstance(value, int) else "string_value"
            setattr(artifact.custom_properties[key], field, value)
        [artifact_id] = store.put_artifacts([artifact])
        for _ in range(execution_ids or 1):
            execution = pb.Execution(type_id=run_type)
            if config:
                execution.custom_properties[config[0]].string_value = config[1]
            [execution_id] = store.put_executions([execution])
            store.put_events([pb.Event(artifact_id=artifact_id, execution_id=execution_id,
                                       type=pb.Event.OUTPUT)])

    ours = {"class_map": "/data/class_map.csv", "noun_class_map": "/data/nouns.csv",
            "encoding": "latin-1"}
    produce("Examples", root / "ClipExampleGen/examples/1", execution_ids=2,
            config=("preprocess_config", json.dumps(ours)))
    produce("Examples", tmp_path / "other_root/ClipExampleGen/examples/9",
            config=("preprocess_config", json.dumps({"class_map": "/elsewhere.csv"})))
    for version, pushed in ((100, 1), (200, 1), (300, 0)):
        produce("PushedModel", root / f"Pusher/pushed_model/{version}", pushed=pushed,
                pushed_destination=f"/serving/mbt/{version}" if pushed else "")
    produce("PushedModel", tmp_path / "other_root/Pusher/pushed_model/9", pushed=1,
            pushed_destination="/other/mbt/999")
    assert run_record.read(str(root)) == run_record.RunRecord(
        metadata_path=str(tmp_path / "metadata.sqlite"), class_map="/data/class_map.csv",
        noun_class_map="/data/nouns.csv", encoding="latin-1", push_dir="/serving/mbt",
        pushed="/serving/mbt/200")
