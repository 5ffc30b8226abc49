"""The curated schema accepts new data and catches real anomalies: TFDV statistics of records
written by the preprocessing job (SplitToTFRecords on real PyAV clips), validated against the
schema inferred from another data set and curated by components/schema_curation.py."""
import glob
import os

import apache_beam as beam
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from apache_beam.options.pipeline_options import PipelineOptions
from tfx_bsl.public import tfxio

from components.preprocess.label_files import ClipRecord
from components.preprocess.transform import RECORDS_FILE_NAME, SplitToTFRecords, read_outcome
from components.schema_curation import (SEQUENCE_STRUCT, class_names_of, curate_schema,
                                        read_schema, write_schema)
from mbt_keras import contract
from pipeline.settings import LOCAL_RUNNER
from tests.components.conftest import write_clip

CLASSES = ["a", "b", "c", "d"]
CLASS_MAP = {name: i for i, name in enumerate(CLASSES)}
MELSPEC_PATH = f"{SEQUENCE_STRUCT}.{contract.MELSPEC}"


def _records(root, name, clips):
    """Runs the preprocessing transform over `clips` ((seconds, size, rate, layout, label)),
    returns the record file pattern."""
    folder = os.path.join(root, name)
    os.makedirs(folder)
    records = [ClipRecord(f"{name}_{i}", write_clip(os.path.join(folder, f"{name}_{i}.mp4"),
                                                    seconds, size=size, rate=rate, layout=layout),
                          (label,), None, None, "train")
               for i, (seconds, size, rate, layout, label) in enumerate(clips)]
    out = os.path.join(folder, "out")
    with beam.Pipeline(options=PipelineOptions([LOCAL_RUNNER])) as pipeline:
        _ = pipeline | beam.Create(records) | SplitToTFRecords(
            CLASS_MAP, "train", os.path.join(out, RECORDS_FILE_NAME),
            os.path.join(out, "DeadLetters"), short_side=32)
    counts = read_outcome(os.path.join(out, "DeadLetters"))
    assert counts["written"] == len(clips) == counts["read"], counts
    return os.path.join(out, f"{RECORDS_FILE_NAME}-*")


def _statistics(pattern):
    """What StatisticsGen computes for our Examples: TFDV over the SequenceExample TFXIO."""
    source = tfxio.TFSequenceExampleRecord(file_pattern=pattern, telemetry_descriptors=["test"])
    path = os.path.join(os.path.dirname(glob.glob(pattern)[0]), "stats.pb")
    with beam.Pipeline(options=PipelineOptions([LOCAL_RUNNER])) as pipeline:
        _ = (pipeline | source.BeamSource() | tfdv.GenerateStatistics(tfdv.StatsOptions())
             | tfdv.WriteStatisticsToBinaryFile(path))
    return tfdv.load_stats_binary(path)


def _rewritten(pattern, folder, change):
    """The same (uncompressed) records with `change(example)` applied to the first one."""
    os.makedirs(folder)
    out = os.path.join(folder, "data_tfrecord-00000-of-00001")
    raw = list(tf.data.TFRecordDataset(sorted(glob.glob(pattern))))
    with tf.io.TFRecordWriter(out) as writer:
        for i, record in enumerate(raw):
            example = tf.train.SequenceExample.FromString(record.numpy())
            if i == 0:
                change(example)
            writer.write(example.SerializeToString())
    return out


def _anomalies(statistics, schema):
    return dict(tfdv.validate_statistics(statistics, schema).anomaly_info)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("schema"))
    # The data the schema is inferred from: labels 0 and 1 only (SchemaGen guesses a boolean
    # domain), 48x64 stereo 44.1 kHz clips of 2-3 s.
    first = _records(root, "first", [(2.0, (64, 48), 44100, "stereo", "a"),
                                     (2.5, (64, 48), 44100, "stereo", "b"),
                                     (3.0, (64, 48), 44100, "stereo", "a")])
    # A differently made set: new ids and files, other durations, resolutions, audio, labels.
    second = _records(root, "second", [(1.5, (96, 64), 16000, "mono", "c"),
                                       (4.0, (40, 40), 48000, "stereo", "d"),
                                       (1.2, (80, 48), 22050, "mono", "a")])
    inferred = tfdv.infer_schema(_statistics(first), infer_feature_shape=True)  # as SchemaGen
    return dict(root=root, second=second, inferred=inferred,
                curated=curate_schema(inferred, CLASSES), second_stats=_statistics(second))


def test_new_data_is_anomalous_for_the_inferred_schema_and_clean_for_the_curated_one(data):
    before = _anomalies(data["second_stats"], data["inferred"])
    assert {contract.CLIP_ID, contract.VIDEO_FILENAME, contract.LABEL_INDEX} <= set(before)
    assert _anomalies(data["second_stats"], data["curated"]) == {}


def test_a_record_without_its_log_mel_is_reported_as_exactly_that(data):
    def drop_melspec(example):
        del example.feature_lists.feature_list[contract.MELSPEC]

    path = _rewritten(data["second"], os.path.join(data["root"], "no_mel"), drop_melspec)
    anomalies = _anomalies(_statistics(path), data["curated"])
    assert set(anomalies) == {MELSPEC_PATH}, anomalies
    assert "present" in anomalies[MELSPEC_PATH].description.lower() or \
        "missing" in anomalies[MELSPEC_PATH].description.lower(), anomalies[MELSPEC_PATH]


def test_a_label_index_outside_the_class_map_is_reported_as_exactly_that(data):
    def label_out_of_range(example):
        index = example.context.feature[contract.LABEL_INDEX].int64_list
        index.value[:] = [len(CLASSES)]

    path = _rewritten(data["second"], os.path.join(data["root"], "bad_label"), label_out_of_range)
    anomalies = _anomalies(_statistics(path), data["curated"])
    assert set(anomalies) == {contract.LABEL_INDEX}, anomalies
    assert str(len(CLASSES)) in anomalies[contract.LABEL_INDEX].description or \
        "out-of-range" in anomalies[contract.LABEL_INDEX].description.lower()


def test_curation_rules_follow_the_class_map_and_keep_the_record_format(data, tmp_path):
    curated = data["curated"]
    features = {f.name: f for f in curated.feature}
    index = features[contract.LABEL_INDEX]
    assert (index.int_domain.min, index.int_domain.max) == (0, len(CLASSES) - 1)
    assert not features[contract.CLIP_ID].HasField("domain")
    assert not any(d.name in (contract.CLIP_ID, contract.VIDEO_FILENAME)
                   for d in curated.string_domain)
    [names] = [d for d in curated.string_domain if d.name == contract.LABEL_TEXT]
    assert list(names.value) == CLASSES
    sequence = {f.name: f for f in features[SEQUENCE_STRUCT].struct_domain.feature}
    mel = sequence[contract.MELSPEC]
    assert not mel.HasField("shape") and not mel.value_counts.value_count[0].HasField("max")
    # Per second: 100 frames x 128 bins, as inferred from the records.
    assert mel.value_counts.value_count[1].min == mel.value_counts.value_count[1].max == (
        contract.SPEC_FRAMES_PER_SECOND * contract.MEL_BINS)
    assert mel.presence.min_fraction == 1.0 and mel.lifecycle_stage == 0
    assert sequence[contract.WAVEFORM].presence.min_fraction == 0.0
    # Written and read back as SchemaGen/ExampleValidator do; the class map file gives the
    # same bounds as the list.
    class_map = tmp_path / "class_map.csv"
    class_map.write_text("index,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(CLASSES)))
    assert class_names_of(str(class_map)) == CLASSES
    assert read_schema(write_schema(curated, str(tmp_path))) == curated
