"""ClipExampleGen in a real LocalDagRunner pipeline with StatisticsGen and SchemaGen, and its
executor run on the component's own execution properties."""
import csv
import glob
import json
import os

import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx
from tfx.orchestration import metadata
from tfx.types import standard_artifacts

from components.clip_example_gen import ClipExampleGen, dead_letters_of
from components.preprocess import executor
from mbt_keras import contract
from pipeline.demo_data import make_demo_data
from tests.components.conftest import damage_packets, write_clip


def test_examples_artifact_feeds_statistics_and_schema_and_keeps_dead_letters(tmp_path):
    data = str(tmp_path / "data")
    make_demo_data(data, clips=6, seed=2)
    with open(os.path.join(data, "videos", "fake.mp4"), "w") as f:
        f.write("not a video\n")
    with open(os.path.join(data, "labels.csv"), "a", newline="") as f:
        csv.writer(f, lineterminator="\n").writerow(["fake", "videos/fake.mp4", "av_match", ""])
    example_gen = ClipExampleGen(labels=os.path.join(data, "labels.csv"), videos=data,
                                 class_map=os.path.join(data, "class_map.csv"), short_side=64)
    statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"])
    db = str(tmp_path / "mlmd.sqlite")
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="clip-example-gen", pipeline_root=str(tmp_path / "root"),
        metadata_connection_config=metadata.sqlite_metadata_connection_config(db),
        components=[example_gen, statistics, schema],
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"]))

    store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(db))
    [examples] = store.get_artifacts_by_type("Examples")
    props = {k: v.string_value or v.int_value for k, v in examples.custom_properties.items()}
    assert props["payload_format"] == "FORMAT_TF_SEQUENCE_EXAMPLE"
    # TFX 1.16's only TFRecord format name; its readers take compression from the suffix.
    assert props["file_format"] == "tfrecords_gzip" and props["compression"] == "none"
    assert json.loads(examples.properties["split_names"].string_value) == ["train", "eval"]
    assert (props["read"], props["written"], props["rejected"]) == (7, 6, 1)
    files = glob.glob(os.path.join(examples.uri, "Split-*", "data_tfrecord-*"))
    assert files and not any(f.endswith(".gz") for f in files)
    records = [tf.train.SequenceExample.FromString(r.numpy())
               for r in tf.data.TFRecordDataset(files)]  # plain TFRecords
    assert sorted(r.context.feature["clip/id"].bytes_list.value[0] for r in records) == [
        f"clip_{i:04d}".encode() for i in range(6)]
    [(clip_id, reason)] = dead_letters_of(examples)
    assert clip_id == "fake" and "not a video file" in reason
    [schema_artifact] = store.get_artifacts_by_type("Schema")
    with open(os.path.join(schema_artifact.uri, "schema.pbtxt")) as f:
        text = f.read()
    assert '"clip/label/index"' in text and '"image/encoded"' in text
    assert '"clip/label/text"' in text  # StatisticsGen read the uncompressed records


def _run_executor(example_gen, uri):
    """The executor's Do on `example_gen`'s execution properties, as the launcher calls it."""
    examples = standard_artifacts.Examples()
    examples.uri = uri
    context = executor.Executor.Context(
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        tmp_dir=os.path.join(uri, ".tmp"), unique_id="1")
    executor.Executor(context).Do({}, {"examples": [examples]}, example_gen.exec_properties)
    return examples


def test_executor_reads_the_label_files_encoding_and_applies_the_damage_threshold(tmp_path):
    clean = write_clip(str(tmp_path / "caf\u00e9.mp4"), 3.0)
    damage_packets(clean, str(tmp_path / "damaged.mp4"), {("video", 10), ("video", 20)})
    labels = tmp_path / "labels.csv"
    labels.write_bytes("path,labels\ncaf\u00e9.mp4,a\ndamaged.mp4,a\n".encode("latin-1"))

    def run(name, **options):
        return _run_executor(ClipExampleGen(labels=str(labels), videos=str(tmp_path),
                                            encoding="latin-1", short_side=48, **options),
                             str(tmp_path / name))

    strict = run("strict", max_damaged_fraction=0.0)  # only the one packet always allowed
    assert (strict.get_int_custom_property("read"), strict.get_int_custom_property("written"),
            strict.get_int_custom_property("rejected")) == (2, 1, 1)
    [(clip_id, reason)] = dead_letters_of(strict)
    assert clip_id.startswith("damaged") and "2 of " in reason and "did not decode" in reason
    tolerant = run("tolerant")  # the default share keeps two damaged packets of ~160
    assert tolerant.get_int_custom_property("written") == 2
    files = glob.glob(os.path.join(tolerant.uri, "Split-*", "data_tfrecord-*"))
    skipped = {r.context.feature[contract.VIDEO_FILENAME].bytes_list.value[0].decode():
               r.context.feature[contract.SKIPPED_PACKETS].int64_list.value[0]
               for r in (tf.train.SequenceExample.FromString(x.numpy())
                         for x in tf.data.TFRecordDataset(files))}
    assert {os.path.basename(k): v for k, v in skipped.items()} == {
        "caf\u00e9.mp4": 0, "damaged.mp4": 2}
