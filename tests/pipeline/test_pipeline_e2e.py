"""The real TFX pipeline, end to end, with LocalDagRunner on demo clips and a micro model.

One shared run (session fixture) feeds most checks; a second run proves caching, and a third
trains a deliberately worse model (zero epochs) that must be neither blessed nor pushed.
"""
import csv
import os

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from pipeline.demo_data import make_demo_data
from pipeline.local_runner import run_local
from pipeline.settings import PipelineSettings, with_class_count

NODES = ("ClipExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer",
         "latest_blessed_model_resolver", "Evaluator", "Pusher")
BROKEN = {"broken_truncated": "videos/broken_truncated.mp4",
          "broken_not_video": "videos/broken_not_video.mp4"}
COMPLETE, CACHED = metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED


def _add_broken_clips(data):
    """A truncated copy of a real clip and a text file posing as an mp4, appended to the labels."""
    with open(os.path.join(data, "videos", "clip_0000.mp4"), "rb") as f:
        head = f.read()[:3000]
    with open(os.path.join(data, BROKEN["broken_truncated"]), "wb") as f:
        f.write(head)
    with open(os.path.join(data, BROKEN["broken_not_video"]), "w") as f:
        f.write("this is not a video\n")
    with open(os.path.join(data, "labels.csv"), "a", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for clip_id, path in BROKEN.items():
            writer.writerow([clip_id, path, "visual_green", "train"])


@pytest.fixture(scope="session")
def e2e(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = str(root / "data")
    make_demo_data(data, clips=30, seed=1)
    _add_broken_clips(data)
    settings = with_class_count(PipelineSettings(
        pipeline_name="mbt-e2e", pipeline_root=str(root / "pipeline_root"),
        metadata_path=str(root / "metadata.sqlite"), videos=data,
        labels=os.path.join(data, "labels.csv"), class_map=os.path.join(data, "class_map.csv"),
        short_side=40, preset="mbt-micro", epochs=20, batch_size=4, learning_rate=2.0,
        train_overrides={"augment": False, "mixup_alpha": 0.0}, min_metric=0.05,
        max_metric_drop=0.0, serving_base=str(root / "serving")))
    run_local(settings)
    return settings


def _store(settings):
    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(settings.metadata_path)
    return metadata_store.MetadataStore(config)


def _executions(settings, node):
    store = _store(settings)
    context = store.get_context_by_type_and_name("node", f"{settings.pipeline_name}.{node}")
    assert context is not None, f"no MLMD context for node {node}"
    return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)


def _versions(settings):
    return sorted(v for v in os.listdir(settings.push_dir) if v.isdigit()) \
        if os.path.isdir(settings.push_dir) else []


def _artifacts(settings, type_name):
    return _store(settings).get_artifacts_by_type(type_name)


@pytest.mark.slow
def test_every_component_executed_and_a_blessed_model_was_pushed(e2e):
    for node in NODES:
        assert _executions(e2e, node)[0].last_known_state == COMPLETE, node
    blessings = _artifacts(e2e, "ModelBlessing")
    assert [b.custom_properties["blessed"].int_value for b in blessings] == [1]
    versions = _versions(e2e)
    assert len(versions) == 1
    assert os.path.exists(os.path.join(e2e.push_dir, versions[0], "saved_model.pb"))


@pytest.mark.slow
def test_broken_clips_become_dead_letters_reachable_from_the_examples_artifact(e2e):
    from components.clip_example_gen import dead_letters_of

    [examples] = _artifacts(e2e, "Examples")
    letters = dead_letters_of(examples)
    assert {item for item, _ in letters} >= set(BROKEN)
    props = examples.custom_properties
    read, written, rejected = (props[k].int_value for k in ("read", "written", "rejected"))
    assert read == 32 and rejected == 2 and written + rejected == read


@pytest.mark.slow
def test_second_run_reuses_the_cache_and_a_worse_model_is_not_pushed(e2e):
    run_local(e2e)
    for node in ("ClipExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer"):
        assert _executions(e2e, node)[-1].last_known_state == CACHED, node
    pushed_before = _versions(e2e)

    # Zero training steps, held to a bar it cannot reach: deterministic, unlike comparing two
    # tiny models on six eval clips (the Evaluator's baseline comparison itself is tested in
    # tests/components/test_eval_config.py).
    worse = e2e.replace(epochs=0, min_metric=0.99)
    run_local(worse)
    assert _executions(e2e, "Trainer")[-1].last_known_state == COMPLETE
    latest_blessing = max(_artifacts(e2e, "ModelBlessing"), key=lambda a: a.id)
    assert latest_blessing.custom_properties["blessed"].int_value == 0
    assert _versions(e2e) == pushed_before
