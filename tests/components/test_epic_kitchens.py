"""Epic-Kitchens-100 read as the paper reads it (section 4.1, Table 2): the official annotation
CSVs, written here in their exact format, through `mbt preprocess --label-format epic-kitchens`
(a real Beam job over real H.264/AAC videos) to records whose [verb, noun] labels the verb_noun
head reads, and to the Evaluator's verb, noun and action top-1 on an exported model."""
import argparse
import csv
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from components import eval_metrics, eval_report
from components.preprocess import label_files
from components.preprocess.splits import assign_split
from components.preprocess.transform import read_outcome
from mbt_keras import contract, input_pipeline
from mbt_keras.config import from_preset
from pipeline.cli import main
from tests.components.conftest import write_clip

# EPIC_100_verb_classes.csv / EPIC_100_noun_classes.csv: id,key,instances,category. 'filter'
# is a verb and a noun, as in the real files.
VERBS = [("take", "['take', 'grab', 'pick-up']", "retrieve"),
         ("put", "['put', 'place', 'put-down']", "leave"),
         ("filter", "['filter', 'strain']", "transform")]
NOUNS = [("tap", "['tap', 'faucet']", "appliances"),
         ("plate", "['plate', 'dish']", "cutlery"),
         ("filter", "['filter', 'strainer']", "cookware"),
         ("board:chopping", "['board:chopping', 'chopping:board']", "cookware")]
HEADER = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,"
          "stop_timestamp,start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,"
          "all_nouns,all_noun_classes").split(",")
# (narration_id, start, stop, verb_class, noun_class); P01_01 lasts 7 s, P02_103 5 s.
SEGMENTS = [("P01_01_0", "00:00:00.50", "00:00:02.00", 0, 1),
            ("P01_01_1", "00:00:02.00", "00:00:05.25", 2, 2),
            ("P01_01_2", "00:00:05.00", "00:00:06.30", 1, 0),
            ("P02_103_0", "00:00:00.00", "00:00:02.40", 0, 3),
            ("P02_103_1", "00:00:02.50", "00:00:04.00", 1, 1),
            ("P02_103_2", "00:00:03.00", "00:00:01.00", 0, 0),   # stops before it starts
            ("P02_103_3", "00:00:01.00", "00:00:02.00", 7, 0)]   # verb class 7 does not exist
GOOD = {n: (v, o) for n, _, _, v, o in SEGMENTS[:5]}
# A verb+noun model whose 3.2 s window is longer than most segments, as Epic's are.
CONFIG = from_preset("mbt-micro", head="verb_noun", num_classes=(len(VERBS), len(NOUNS)),
                     spec_frames=320)


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _annotation_row(narration_id, start, stop, verb, noun):
    participant, video = narration_id.split("_")[0], "_".join(narration_id.split("_")[:2])
    verb_key, noun_key = VERBS[verb % 3][0], NOUNS[noun][0]
    return [narration_id, participant, video, start, start, stop, 0, 0,
            f"{verb_key} {noun_key}", verb_key, verb, noun_key, noun, f"['{noun_key}']",
            f"[{noun}]"]


@pytest.fixture(scope="module")
def epic(tmp_path_factory):
    """{name: path} of an Epic-Kitchens-100 layout: <root>/<participant>/videos/<video>.MP4
    and the three annotation files."""
    root = tmp_path_factory.mktemp("epic")
    for participant, video, seconds in (("P01", "P01_01", 7.0), ("P02", "P02_103", 5.0)):
        os.makedirs(root / "videos" / participant / "videos")
        write_clip(str(root / "videos" / participant / "videos" / f"{video}.MP4"), seconds,
                   fps=25, size=(64, 48), rate=contract.SAMPLE_RATE, layout="mono")
    return {
        "videos": str(root / "videos"),
        "labels": _write_csv(root / "EPIC_100_validation.csv", HEADER,
                             [_annotation_row(*s) for s in SEGMENTS]),
        "verbs": _write_csv(root / "EPIC_100_verb_classes.csv", ["id", "key", "instances",
                                                                 "category"],
                            [(i, *v) for i, v in enumerate(VERBS)]),
        "nouns": _write_csv(root / "EPIC_100_noun_classes.csv", ["id", "key", "instances",
                                                                 "category"],
                            [(i, *n) for i, n in enumerate(NOUNS)]),
    }


def test_rows_become_segments_of_the_participants_videos_named_by_verb_and_noun_class(epic):
    records, class_map = label_files.parse_label_file(
        epic["labels"], epic["videos"], "epic-kitchens", class_map_path=epic["verbs"],
        noun_class_map_path=epic["nouns"])
    assert label_files.class_names(class_map) == (
        [f"verb:{v[0]}" for v in VERBS] + [f"noun:{n[0]}" for n in NOUNS])
    assert label_files.head_sizes(class_map) == (3, 4)
    first = records[1]
    assert (first.clip_id, first.start, first.end, first.labels) == (
        "P01_01_1", 2.0, 5.25, ("verb:filter", "noun:filter"))
    assert first.uri == os.path.join(epic["videos"], "P01", "videos", "P01_01.MP4")
    assert first.row == f"{epic['labels']}:3"
    backwards, unknown = records[5], records[6]
    assert "stop_timestamp 00:00:01.00 is not after start_timestamp 00:00:03.00" in backwards.error
    assert unknown.error_kind == "unknown_label" and "verb:<id 7>" in unknown.error


def test_epic_kitchens_needs_both_class_maps_and_its_own_columns(epic, tmp_path):
    with pytest.raises(label_files.UserError, match="--noun-class-map EPIC_100_noun"):
        label_files.parse_label_file(epic["labels"], epic["videos"], "epic-kitchens",
                                     class_map_path=epic["verbs"])
    audioset = _write_csv(tmp_path / "segments.csv", ["YTID", "start_seconds"], [["a", 1]])
    with pytest.raises(label_files.LabelFileError,
                       match=r"segments.csv:1: no column\(s\) narration_id, participant_id"):
        label_files.parse_label_file(audioset, epic["videos"], "epic-kitchens",
                                     class_map_path=epic["verbs"],
                                     noun_class_map_path=epic["nouns"])


def test_a_noun_class_map_not_numbered_0_to_n_minus_1_is_refused_naming_its_row(epic,
                                                                               tmp_path):
    one_based = _write_csv(tmp_path / "EPIC_100_noun_classes.csv",
                           ["id", "key", "instances", "category"],
                           [(i + 1, *n) for i, n in enumerate(NOUNS)])
    with pytest.raises(label_files.LabelFileError,
                       match=rf"{one_based}:5: index 4 of class 'board:chopping' is outside "
                             r"0\.\.3"):
        label_files.parse_label_file(epic["labels"], epic["videos"], "epic-kitchens",
                                     class_map_path=epic["verbs"],
                                     noun_class_map_path=one_based)


def test_segments_of_one_video_share_a_split_and_two_videos_can_differ(epic, tmp_path):
    """Hashed by narration id, 40 segments of one video would land in both splits."""
    rows = [_annotation_row(f"{video}_{i}", f"00:00:{i / 4:05.2f}", f"00:00:{i / 4 + 1:05.2f}",
                            i % 3, i % 4) for video in ("P01_01", "P02_103") for i in range(20)]
    labels = _write_csv(tmp_path / "EPIC_100_train.csv", HEADER, rows)
    records, _ = label_files.parse_label_file(labels, epic["videos"], "epic-kitchens",
                                              class_map_path=epic["verbs"],
                                              noun_class_map_path=epic["nouns"])
    splits = {}
    for record in records:
        assert not record.error and record.group == record.clip_id.rsplit("_", 1)[0]
        splits.setdefault(record.group, set()).add(
            assign_split(record, {"train": 1, "eval": 1}).split)
    assert all(len(s) == 1 for s in splits.values()) and len(splits) == 2, splits


def test_the_launcher_checks_an_epic_file_by_its_head_and_the_workers_read_its_rows(epic):
    source = label_files.LabelSource(epic["labels"], epic["videos"], "epic-kitchens",
                                     epic["verbs"], noun_class_map=epic["nouns"])
    label_files.check_source(source)
    with pytest.raises(label_files.UserError, match="--video-template '{ytid}.mp4'"):
        label_files.check_source(source._replace(video_template="{ytid}.mp4"))
    with pytest.raises(label_files.UserError, match="epic-kitchens only"):
        label_files.check_source(source._replace(fmt="generic"))
    rows = list(label_files.label_rows(source, label_files.source_class_map(source)))
    assert [r.row for r in rows] == [f"{epic['labels']}:{n}"
                                     for n in range(2, 2 + len(SEGMENTS))]
    assert {r.clip_id for r in rows if not r.error} == set(GOOD)


@pytest.fixture(scope="module")
def preprocessed(epic, tmp_path_factory):
    """`mbt preprocess --label-format epic-kitchens` into one eval split: its output folder."""
    out = str(tmp_path_factory.mktemp("out") / "records")
    assert main(["preprocess", "--labels", epic["labels"], "--videos", epic["videos"],
                 "--label-format", "epic-kitchens", "--class-map", epic["verbs"],
                 "--noun-class-map", epic["nouns"], "--splits", "eval:1", "--workers", "1",
                 "--out", out, "--quiet"]) == 0
    return out


def _records(out):
    files = sorted(glob.glob(os.path.join(out, "Split-eval", "data_tfrecord-*")))
    return [r.numpy() for r in tf.data.TFRecordDataset(files)]


def test_records_carry_verb_and_noun_in_the_heads_index_spaces(preprocessed):
    counts = read_outcome(os.path.join(preprocessed, "DeadLetters"))
    assert (counts["read"], counts["written"], counts["rejected_by_kind"]) == (
        7, 5, {"bad_row": 1, "unknown_label": 1})
    names = label_files.class_names(label_files.read_class_map(
        os.path.join(preprocessed, "class_map.csv")))
    seen = set()
    for serialized in _records(preprocessed):
        example = tf.train.SequenceExample.FromString(serialized)
        context = example.context.feature
        clip_id = context[contract.CLIP_ID].bytes_list.value[0].decode()
        verb, noun = GOOD[clip_id]
        seen.add(clip_id)
        assert list(context[contract.LABEL_INDEX].int64_list.value) == [verb, noun]
        assert [t.decode() for t in context[contract.LABEL_TEXT].bytes_list.value] == [
            names[verb], names[len(VERBS) + noun]]
        labels = input_pipeline.label_vector(
            input_pipeline.parse(tf.constant(serialized), CONFIG)["labels"], CONFIG).numpy()
        assert np.flatnonzero(labels).tolist() == [verb, len(VERBS) + noun], clip_id
        # Segments shorter than the window are looped to a whole window (windows.py).
        inputs, _ = input_pipeline.eval_example(tf.constant(serialized), CONFIG, 2)
        assert inputs[contract.INPUT_SPEC].shape == (2, CONFIG.spec_frames, CONFIG.mel_bins)
    assert seen == set(GOOD)


def test_the_evaluator_reports_verb_noun_and_action_top1_of_the_records(preprocessed, epic,
                                                                         tmp_path, capsys):
    from tests.components.test_eval_config import SERVING_SUBDIR, _scores, run_evaluator
    from tests.serving.conftest import export_micro
    from tfx.components.util import examples_utils
    from tfx.proto import example_gen_pb2
    from tfx.types import artifact_utils, standard_artifacts

    names = label_files.class_names(label_files.read_class_map(
        os.path.join(preprocessed, "class_map.csv")))
    model = str(tmp_path / "model")
    export_micro(os.path.join(model, SERVING_SUBDIR), seed=3, config=CONFIG, class_names=names)
    examples = standard_artifacts.Examples()
    examples.uri = preprocessed
    examples.split_names = artifact_utils.encode_split_names(["eval"])
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_SEQUENCE_EXAMPLE)
    evaluation, _ = run_evaluator(examples, model, str(tmp_path), config=CONFIG, min_metric=0.0)

    scores, labels = _scores(model, _records(preprocessed))
    verbs = slice(0, len(VERBS))
    nouns = slice(len(VERBS), None)
    verb_right = scores[:, verbs].argmax(1) == labels[:, verbs].argmax(1)
    noun_right = scores[:, nouns].argmax(1) == labels[:, nouns].argmax(1)
    summary = eval_report.load_eval_summary(evaluation)
    # (seed 3: the three differ on these records, so a head read from the wrong place shows)
    assert 0 < (verb_right & noun_right).mean() < min(verb_right.mean(), noun_right.mean())
    assert summary.metrics["example_count"] == len(GOOD)
    assert summary.metrics[eval_metrics.VERB_TOP_1] == pytest.approx(verb_right.mean())
    assert summary.metrics[eval_metrics.NOUN_TOP_1] == pytest.approx(noun_right.mean())
    assert summary.metrics[eval_metrics.ACTION_TOP_1] == pytest.approx(
        (verb_right & noun_right).mean())

    # `mbt report` takes the nouns' names too (the names of its attention maps' classes).
    from pipeline import report_cli
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    assert report_cli.run(parser.parse_args([
        str(tmp_path), "--class-map", epic["verbs"], "--noun-class-map", epic["nouns"],
        "--serving-base", str(tmp_path / "serving"), "--attention-clips", "0"])) == 0
    assert (f"class map:    {epic['verbs']} (--class-map), nouns {epic['nouns']}\n"
            in capsys.readouterr().out)
    names, _ = report_cli.class_names_and_groups(epic["verbs"], noun_path=epic["nouns"])
    assert names == [f"verb:{v[0]}" for v in VERBS] + [f"noun:{n[0]}" for n in NOUNS]


def test_a_pipeline_run_on_epic_kitchens_sizes_the_heads_and_the_evaluator_from_the_class_files(
        epic, tmp_path):
    from pipeline.pipeline import create_pipeline
    from pipeline.pipeline_cli import add_settings_arguments, check_settings, settings_from_args
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    settings = settings_from_args(parser.parse_args([
        "--labels", epic["labels"], "--videos", epic["videos"], "--label-format",
        "epic-kitchens", "--class-map", epic["verbs"], "--noun-class-map", epic["nouns"],
        "--preset", "mbt-micro", "--set", "head=verb_noun", "--pipeline-root", str(tmp_path)]))
    settings = check_settings(settings, local=True)  # the settings `mbt pipeline run` runs
    assert settings.overrides["num_classes"] == (3, 4)
    by_id = {c.id: c for c in create_pipeline(settings).components}
    assert json.loads(by_id["Trainer"].exec_properties["custom_config"])["noun_class_map"] == (
        epic["nouns"])
    metrics = json.loads(by_id["Evaluator"].exec_properties["eval_config"])["metrics_specs"][0]
    configs = {json.loads(m["config"])["name"]: json.loads(m["config"]) for m in
               metrics["metrics"] if "config" in m}
    assert configs[eval_metrics.ACTION_TOP_1]["num_verbs"] == 3
    assert (configs[eval_metrics.NOUN_TOP_1]["offset"],
            configs[eval_metrics.NOUN_TOP_1]["num_classes"]) == (3, 4)
