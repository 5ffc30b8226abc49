"""What a pipeline run recorded about itself in ML Metadata: the class map ExampleGen used and
where the Pusher pushed, so `mbt report RUN_DIR` needs no flag that repeats the run's.

The local runner keeps the store beside the pipeline root, as `PipelineSettings` lays them
out (`out/pipeline_root`, `out/metadata.sqlite`); the store's URIs are absolute
(`pipeline/local_runner.py`), so the record is read the same from any working directory.
Only artifacts under RUN_DIR count: one store may hold other pipelines' runs.
"""
import dataclasses
import json
import os
from typing import Optional

from pipeline.settings import PipelineSettings


@dataclasses.dataclass(frozen=True)
class RunRecord:
    metadata_path: Optional[str] = None   # None: no store found
    class_map: Optional[str] = None       # the class map file ExampleGen read
    noun_class_map: Optional[str] = None  # with it, Epic-Kitchens' nouns (class_map: verbs)
    encoding: str = "utf-8"               # its text encoding
    push_dir: Optional[str] = None        # <serving base>/<model name> the Pusher pushes to
    pushed: Optional[str] = None          # the newest version this run pushed


def default_metadata_path(run_dir: str) -> str:
    """Where the local runner keeps the store of a run whose pipeline root is `run_dir`:
    placed relative to it as the default settings place them."""
    defaults = PipelineSettings()
    beside = os.path.relpath(defaults.metadata_path, defaults.pipeline_root)
    return os.path.normpath(os.path.join(os.path.abspath(run_dir), beside))


def read(run_dir: str, metadata_path: Optional[str] = None) -> RunRecord:
    """The run's record; an empty one when there is no store (a run on Kubeflow/Vertex keeps
    its store elsewhere; flags then say what the run would have)."""
    path = metadata_path or default_metadata_path(run_dir)
    if not os.path.isfile(path):
        return RunRecord()
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.types.standard_component_specs import PUSH_DESTINATION_KEY

    from components.preprocess.executor import PREPROCESS_CONFIG_KEY
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    root = os.path.abspath(run_dir).rstrip(os.sep) + os.sep

    def newest(type_name, keep=lambda artifact: True):
        found = [a for a in store.get_artifacts_by_type(type_name)
                 if a.uri.startswith(root) and keep(a)]
        return max(found, key=lambda a: a.id) if found else None

    def producer(artifact):
        # Cached re-runs record the same artifact as their output too; the first made it.
        first = min(e.execution_id for e in store.get_events_by_artifact_ids([artifact.id])
                    if e.type == metadata_store_pb2.Event.OUTPUT)
        return store.get_executions_by_id([first])[0]

    record = {"metadata_path": path}
    examples = newest("Examples")
    if examples is not None:
        preprocess = json.loads(_property(producer(examples), PREPROCESS_CONFIG_KEY) or "{}")
        record.update(class_map=preprocess.get("class_map"),
                      noun_class_map=preprocess.get("noun_class_map") or None,
                      encoding=preprocess.get("encoding", "utf-8"))
    pushed = newest("PushedModel", lambda a: a.custom_properties["pushed"].int_value == 1)
    if pushed is not None:
        record["pushed"] = pushed.custom_properties["pushed_destination"].string_value
        record["push_dir"] = os.path.dirname(record["pushed"].rstrip("/"))
    else:
        attempt = newest("PushedModel")
        destination = json.loads(_property(producer(attempt), PUSH_DESTINATION_KEY) or "{}") \
            if attempt is not None else {}
        record["push_dir"] = destination.get("filesystem", {}).get("baseDirectory")
    return RunRecord(**record)


def _property(execution, name: str) -> Optional[str]:
    """An execution property's string value, wherever TFX put it (properties or custom)."""
    for properties in (execution.properties, execution.custom_properties):
        if name in properties:
            return properties[name].string_value
    return None
