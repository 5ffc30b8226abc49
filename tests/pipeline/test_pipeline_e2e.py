"""The real TFX pipeline, end to end, with LocalDagRunner on demo clips and a micro model.

One shared run (session fixture) feeds most checks; a second run proves caching, and a third
trains a deliberately worse model (zero epochs) that must be neither blessed nor pushed.
The shared run is given relative paths: everything it records must still resolve from
another working directory.
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

NODES = ("ClipExampleGen", "StatisticsGen", "SchemaGen", "SchemaCurator", "ExampleValidator",
         "Trainer",
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
    make_demo_data(str(root / "data"), clips=30, seed=1)
    _add_broken_clips(str(root / "data"))
    cwd = os.getcwd()
    os.chdir(root)  # the run sees relative paths only, as `mbt pipeline run` from a folder
    try:
        settings = with_class_count(PipelineSettings(
            pipeline_name="mbt-e2e", pipeline_root="pipeline_root",
            metadata_path="metadata.sqlite", videos="data", labels="data/labels.csv",
            class_map="data/class_map.csv", short_side=40, fps=5, preset="mbt-micro", epochs=20,
            batch_size=4, learning_rate=2.0,
            train_overrides={"augment": False, "mixup_alpha": 0.0}, min_metric=0.05,
            max_metric_drop=0.0, serving_base="serving"))
        settings = run_local(settings)
    finally:
        os.chdir(cwd)
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


@pytest.mark.slow
def test_recorded_uris_resolve_from_another_directory(e2e, tmp_path, monkeypatch):
    """A notebook elsewhere: statistics (TFDV), the curated schema, the validation, the
    evaluation (TFMA) and the pushed model all load from the URIs the store recorded."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    import tensorflow_model_analysis as tfma
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from mbt_keras import contract

    monkeypatch.chdir(tmp_path)
    store = _store(e2e)
    assert all(os.path.isabs(artifact.uri) for artifact in store.get_artifacts())

    def first(type_name):
        return min(_artifacts(e2e, type_name), key=lambda a: a.id)

    statistics = first("ExampleStatistics")
    train_stats = tfdv.load_stats_binary(os.path.join(statistics.uri, "Split-train",
                                                      "FeatureStats.pb"))
    assert train_stats.datasets[0].num_examples > 0
    # Frames stored at the pipeline's --fps 5 (not the paper's 25), and so trained on and
    # evaluated: ClipExampleGen -> statistics -> Trainer -> Evaluator -> pushed model.
    rate = tfdv.get_feature_stats(train_stats.datasets[0], tfdv.FeaturePath([contract.CLIP_FPS]))
    assert rate.num_stats.min == rate.num_stats.max == 5.0
    curator = _executions(e2e, "SchemaCurator")[0]
    [curated] = store.get_artifacts_by_id(
        [e.artifact_id for e in store.get_events_by_execution_ids([curator.id])
         if e.type == metadata_store_pb2.Event.OUTPUT])
    schema = tfdv.load_schema_text(os.path.join(curated.uri, "schema.pbtxt"))
    index = tfdv.get_feature(schema, contract.LABEL_INDEX)
    assert (index.int_domain.min, index.int_domain.max) == (0, e2e.overrides["num_classes"] - 1)
    # ExampleValidator used the curated schema: the demo data has no anomaly.
    validation = first("ExampleAnomalies")
    for split in ("train", "eval"):
        anomalies = anomalies_pb2.Anomalies.FromString(tf.io.gfile.GFile(
            os.path.join(validation.uri, f"Split-{split}", "SchemaDiff.pb"), "rb").read())
        assert dict(anomalies.anomaly_info) == {}, (split, anomalies)
    metrics = list(tfma.load_metrics(first("ModelEvaluation").uri))
    assert metrics and metrics[0].metric_keys_and_values
    pushed = min((p for p in _artifacts(e2e, "PushedModel")
                  if p.custom_properties["pushed"].int_value == 1), key=lambda a: a.id)
    destination = pushed.custom_properties["pushed_destination"].string_value
    assert os.path.isabs(destination) and destination.startswith(e2e.push_dir)
    model = tf.saved_model.load(destination)
    assert contract.SIG_SERVING in model.signatures


def _summary_tags(folder):
    import glob

    import tensorflow as tf
    return {value.tag for path in glob.glob(os.path.join(folder, "**", "events.out.tfevents.*"),
                                            recursive=True)
            for event in tf.compat.v1.train.summary_iterator(path)
            for value in event.summary.value}


@pytest.mark.slow
def test_report_as_printed_reads_names_groups_and_push_from_the_run(e2e, tmp_path, capsys):
    """`mbt report RUN_DIR`, no flags, from another directory (the demo prints it so): the
    class map ExampleGen read and the Pusher's destination come from the run's ML Metadata;
    TensorBoard's per-class tags and the attention maps of eval clips carry the names."""
    import re
    import subprocess
    import sys

    from components.eval_report import PR_CURVE_PREFIX
    from components.preprocess.label_files import class_names, read_class_groups, read_class_map
    from pipeline.report_cli import newest_output

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "report", e2e.pipeline_root],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": repo})
    assert done.returncode == 0, done.stderr
    groups = read_class_groups(e2e.class_map)
    assert len(groups) == e2e.overrides["num_classes"]
    for name, group in groups.items():
        assert re.search(rf"(\d\.\d{{3}}|  n/a)  {name} +{group}\n", done.stdout), name
    assert "class 0" not in done.stdout
    assert f"class map:    {e2e.class_map} (the run's)" in done.stdout
    assert f"ML Metadata:  {e2e.metadata_path}" in done.stdout
    newest = max(_versions(e2e), key=int)
    assert (f"serving:      {os.path.join(e2e.push_dir, newest)} (serving version "
            f"{newest})") in done.stdout
    assert "attention maps of" in done.stdout
    tags = _summary_tags(os.path.join(newest_output(e2e.pipeline_root, "Trainer", "model_run"),
                                      "evaluation"))
    names = class_names(read_class_map(e2e.class_map))
    for index, name in enumerate(names):
        assert any(t.startswith(f"{PR_CURVE_PREFIX}/{index:03d}_{name}") for t in tags), name
    attention = sorted(t for t in tags if t.startswith("attention/"))
    assert attention and all(t.split("_", 1)[1] in groups for t in attention), attention

    # Flags override what the run recorded.
    from pipeline.cli import main
    elsewhere = tmp_path / "elsewhere"
    assert main(["report", e2e.pipeline_root, "--serving-base", str(elsewhere),
                 "--attention-clips", "0"]) == 0
    out = capsys.readouterr().out
    assert f"serving:      nothing in {elsewhere / e2e.model_name}" in out
    assert "attention maps of" not in out and "visual_green" in out
