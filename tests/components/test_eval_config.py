"""The TFX Evaluator executor (TFMA 0.47 under Beam's DirectRunner) on an exported mbt-micro
model and real GZIP SequenceExample TFRecords, checked against the project's own metrics."""
import argparse
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis.proto import config_pb2
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx.utils import proto_utils

from components import eval_metrics, eval_report
from components.eval_config import (
    PR_CURVE_CLASSES, build_eval_config, headline_metric, task_plots)
from mbt_keras import contract, metrics
from mbt_keras.config import from_preset
from tests.mbt_keras.tfrecord_fixtures import sequence_example, write_tfrecord

NUM_CLIPS = 12
CONFIG = from_preset("mbt-micro")
SERVING_SUBDIR = "Format-Serving"  # where the Trainer's run_fn exports inside the Model artifact


def _clip(rng, index):
    frames = rng.integers(0, 256, (8, 40, 48, 3), dtype=np.uint8)
    melspec = rng.normal(-6.0, 3.0, (100, contract.MEL_BINS)).astype(np.float32)
    # Every class has a positive; clips have one to three labels.
    labels = sorted({index % 4, *rng.choice(4, size=rng.integers(0, 3), replace=False).tolist()})
    return sequence_example(frames, melspec, labels, fps=8.0, clip_id=f"clip{index}"), labels


def examples_artifact(root, examples):
    """An Examples artifact at `root` whose one split, eval, holds `examples` (SequenceExamples)."""
    os.makedirs(root / "Split-eval")
    write_tfrecord(root / "Split-eval" / "data_tfrecord-00000-of-00001.gz", examples)
    artifact = standard_artifacts.Examples()
    artifact.uri = str(root)
    artifact.split_names = artifact_utils.encode_split_names(["eval"])
    examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_SEQUENCE_EXAMPLE)
    return artifact


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory):
    """(Examples artifact as the clip ExampleGen writes it, serialized examples, labels [N, 4])."""
    rng = np.random.default_rng(7)
    clips = [_clip(rng, i) for i in range(NUM_CLIPS)]
    examples = examples_artifact(tmp_path_factory.mktemp("examples"),
                                 [example for example, _ in clips])
    labels = np.zeros((NUM_CLIPS, 4), np.float32)
    for row, (_, positives) in enumerate(clips):
        labels[row, positives] = 1.0
    return examples, [example.SerializeToString() for example, _ in clips], labels


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Model artifact directories of two mbt-micro models with different weights."""
    from tests.serving.conftest import export_micro
    root = tmp_path_factory.mktemp("models")
    for seed in (1, 2):
        export_micro(str(root / f"seed{seed}" / SERVING_SUBDIR), seed)
    return [str(root / f"seed{seed}") for seed in (1, 2)]


def _model_artifact(uri):
    model = standard_artifacts.Model()
    model.uri = uri
    return model


def run_evaluator(examples, model, run_dir, execution_id=1, baseline=None, config=CONFIG,
                  **thresholds):
    """The TFX Evaluator executor as the pipeline runs it; (evaluation dir, blessed)."""
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri = os.path.join(run_dir, "Evaluator", "evaluation", str(execution_id))
    blessing.uri = os.path.join(run_dir, "Evaluator", "blessing", str(execution_id))
    for artifact in (evaluation, blessing):
        os.makedirs(artifact.uri)
    inputs = {specs.EXAMPLES_KEY: [examples], specs.MODEL_KEY: [_model_artifact(model)]}
    if baseline:
        inputs[specs.BASELINE_MODEL_KEY] = [_model_artifact(baseline)]
    eval_config = build_eval_config(config, **thresholds)
    evaluator_executor.Executor().Do(
        inputs, {specs.EVALUATION_KEY: [evaluation], specs.BLESSING_KEY: [blessing]},
        {specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(eval_config),
         specs.EXAMPLE_SPLITS_KEY: json.dumps(["eval"])})
    (decision,) = os.listdir(blessing.uri)
    return evaluation.uri, decision == "BLESSED"


def _scores(model, serialized):
    signatures = tf.saved_model.load(os.path.join(model, SERVING_SUBDIR)).signatures
    scores = signatures[contract.SIG_EXAMPLES](examples=tf.constant(serialized))[contract.OUT_SCORES]
    labels = signatures[contract.SIG_LABELS](examples=tf.constant(serialized))[contract.LABEL_KEY]
    return scores.numpy(), labels.numpy()


def test_evaluator_map_equals_the_project_map_on_the_same_predictions(models, eval_data, tmp_path):
    examples, serialized, labels = eval_data
    # First run: no blessed baseline yet, so the change threshold waits (TFX rubber-stamps).
    evaluation, blessed = run_evaluator(examples, models[0], str(tmp_path), min_metric=0.0)

    scores, exported_labels = _scores(models[0], serialized)
    np.testing.assert_array_equal(exported_labels, labels)  # SIG_LABELS gives the multi-hot rows
    expected_map, expected_ap, skipped = metrics.mean_average_precision(labels, scores)
    assert skipped == 0 and 0.0 < expected_map < 1.0

    summary = eval_report.load_eval_summary(evaluation)
    assert blessed and summary.blessed is True and summary.failures == []
    assert summary.metrics["example_count"] == NUM_CLIPS
    assert summary.metrics[eval_metrics.MEAN_AVERAGE_PRECISION] == pytest.approx(expected_map, abs=1e-6)
    assert summary.per_class_ap == pytest.approx(dict(enumerate(expected_ap)), abs=1e-6)


def test_a_candidate_worse_than_the_blessed_baseline_is_not_blessed(models, eval_data, tmp_path):
    examples, serialized, labels = eval_data
    maps = [metrics.mean_average_precision(labels, _scores(m, serialized)[0])[0] for m in models]
    worse, better = (models[0], models[1]) if maps[0] < maps[1] else (models[1], models[0])
    evaluation, blessed = run_evaluator(examples, worse, str(tmp_path), baseline=better,
                                        min_metric=0.0, max_metric_drop=0.0)
    assert not blessed
    validation = tfma.load_validation_result(evaluation)
    failed = [failure.metric_key.name for per_slice in validation.metric_validations_per_slice
              for failure in per_slice.failures]
    assert failed == [eval_metrics.MEAN_AVERAGE_PRECISION]

    log_dir = str(tmp_path / "logs")
    summary = eval_report.write_eval_summaries(evaluation, log_dir, ["speech", "music", "dog", "engine"])
    assert summary.blessed is False and "mean_average_precision" in summary.failures[0]
    assert summary.metrics[eval_metrics.MEAN_AVERAGE_PRECISION] == pytest.approx(min(maps), abs=1e-6)
    events = {}
    for path in tf.io.gfile.glob(f"{log_dir}/{eval_report.SUMMARY_SUBDIR}/events.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                events[value.tag] = tf.make_ndarray(value.tensor)
    assert events[f"eval/{eval_metrics.MEAN_AVERAGE_PRECISION}"] == pytest.approx(min(maps))
    width, height = [int(v) for v in events["eval/per_class_average_precision"][:2]]
    assert width > 50 and height > 50  # an image summary holds [width, height, PNG]
    assert events["eval/blessing"].item().decode().startswith("NOT BLESSED")


def test_report_prints_metrics_blessing_push_and_logs(models, eval_data, tmp_path, capsys):
    """`mbt report` on a pipeline root whose Evaluator rejected the candidate."""
    from pipeline import report_cli
    examples, _, _ = eval_data
    run_dir = tmp_path / "root"
    _, blessed = run_evaluator(examples, models[0], str(run_dir), execution_id=7,
                               min_metric=1.01)  # no model reaches mAP > 1
    assert not blessed
    (run_dir / "Trainer" / "model_run" / "5").mkdir(parents=True)
    (run_dir / "Pusher" / "pushed_model" / "8").mkdir(parents=True)
    (tmp_path / "serving" / "mbt" / "1").mkdir(parents=True)
    (tmp_path / "serving" / "mbt" / "1" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "serving" / "mbt" / "2").mkdir()  # a push still being copied: no saved_model.pb
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    args = parser.parse_args([str(run_dir), "--serving-base", str(tmp_path / "serving"),
                              "--class-map", ""])
    assert report_cli.run(args) == 0
    text = capsys.readouterr().out
    assert "NOT BLESSED" in text and "mean_average_precision" in text
    assert "this run:     not pushed" in text
    assert f"{tmp_path}/serving/mbt/1 (serving version 1)" in text
    assert f"tensorboard --logdir {run_dir}/Trainer/model_run/5" in text
    assert os.listdir(run_dir / "Trainer" / "model_run" / "5" / eval_report.SUMMARY_SUBDIR)


@pytest.mark.parametrize("preset_overrides, names", [
    (dict(head="multilabel"), [eval_metrics.MEAN_AVERAGE_PRECISION]),
    (dict(head="singlelabel", num_classes=(10,)),
     [eval_metrics.TOP_1, eval_metrics.TOP_5, eval_metrics.MEAN_AVERAGE_PRECISION]),
    (dict(head="verb_noun", num_classes=(3, 5)),
     [eval_metrics.ACTION_TOP_1, eval_metrics.VERB_TOP_1, eval_metrics.NOUN_TOP_1]),
])
def test_task_picks_the_paper_metrics_and_gates_the_headline_one(preset_overrides, names):
    config = from_preset("mbt-micro", **preset_overrides)
    eval_config = build_eval_config(config, min_metric=0.3, max_metric_drop=0.01)
    spec = eval_config.model_specs[0]
    assert (spec.signature_name, spec.label_key, spec.prediction_key) == (
        contract.SIG_EXAMPLES, contract.LABEL_KEY, contract.OUT_SCORES)
    assert list(spec.preprocessing_function_names) == [contract.SIG_LABELS]
    configs = eval_config.metrics_specs[0].metrics
    assert [json.loads(m.config)["name"] for m in configs[1:]] == names
    assert headline_metric(config) == names[0]
    gated = [m for m in configs if m.HasField("threshold")]
    assert len(gated) == 1 and json.loads(gated[0].config)["name"] == names[0]
    threshold = gated[0].threshold
    assert threshold.value_threshold.lower_bound.value == pytest.approx(0.3)
    assert threshold.change_threshold.absolute.value == pytest.approx(-0.01)


def test_verb_noun_metrics_split_the_heads():
    # 2 verbs, 3 nouns; rows: both right, verb wrong, noun wrong, both wrong.
    labels = np.array([[1, 0, 0, 1, 0], [1, 0, 0, 0, 1], [0, 1, 1, 0, 0], [0, 1, 0, 1, 0]], np.float32)
    scores = np.array([[.9, .1, .1, .8, .1], [.2, .8, .1, .1, .8], [.3, .7, .1, .8, .1],
                       [.6, .4, .7, .2, .1]], np.float32)
    key = tfma.metrics.MetricKey(name="k")
    assert eval_metrics._action_result(key, labels, scores, num_verbs=2)[key] == 0.25
    assert eval_metrics._top_k_result(key, labels, scores, k=1, offset=0, num_classes=2)[key] == 0.5
    assert eval_metrics._top_k_result(key, labels, scores, k=1, offset=2, num_classes=3)[key] == 0.5


def _curve_class_ids(eval_config):
    """Class ids of the PR curves (the binarized ConfusionMatrixPlot) in `eval_config`."""
    return [list(spec.binarize.class_ids.values) for spec in eval_config.metrics_specs
            if [m.class_name for m in spec.metrics] == ["ConfusionMatrixPlot"]]


@pytest.mark.parametrize("preset, pr_curve_classes, curves", [
    ("mbt-micro", None, [[0, 1, 2, 3]]),                    # a small head: every class
    ("mbt-b16", None, [list(range(PR_CURVE_CLASSES))]),      # AudioSet's 527: capped
    ("mbt-b16", 527, [list(range(527))]),
    ("mbt-b16", 0, []),
])
def test_pr_curves_are_capped_and_the_metrics_still_cover_every_class(preset, pr_curve_classes,
                                                                      curves):
    config = from_preset(preset)
    eval_config = build_eval_config(config, pr_curve_classes=pr_curve_classes)
    assert _curve_class_ids(eval_config) == curves
    headline = eval_config.metrics_specs[0]
    assert not headline.HasField("binarize")  # mAP and AP per class over every class
    assert [m.class_name for m in headline.metrics] == ["ExampleCount", "MeanAveragePrecision"]


def test_a_capped_single_label_head_keeps_its_confusion_matrix():
    config = from_preset("mbt-micro", head="singlelabel", num_classes=(309,))  # VGGSound
    plots = task_plots(config, pr_curve_classes=0)
    assert [[m.class_name for m in spec.metrics] for spec in plots] == [
        ["MultiClassConfusionMatrixPlot"]]
    with pytest.raises(ValueError, match="pr_curve_classes=-1: must be >= 0"):
        task_plots(config, pr_curve_classes=-1)


@pytest.mark.parametrize("flags, curve_classes", [([], PR_CURVE_CLASSES),
                                                  (["--pr-curve-classes", "8"], 8)])
def test_pr_curve_classes_flag_reaches_the_evaluator(flags, curve_classes, tmp_path):
    from pipeline import pipeline_cli
    from pipeline.pipeline import create_pipeline
    parser = argparse.ArgumentParser()
    pipeline_cli.add_settings_arguments(parser)
    settings = pipeline_cli.settings_from_args(parser.parse_args(
        ["--preset", "mbt-b16", "--pipeline-root", str(tmp_path)] + flags))
    [evaluator] = [c for c in create_pipeline(settings).components if c.id == "Evaluator"]
    eval_config = json_format.Parse(evaluator.exec_properties["eval_config"],
                                    config_pb2.EvalConfig())
    assert _curve_class_ids(eval_config) == [list(range(curve_classes))]


def test_the_evaluator_draws_curves_for_the_capped_classes_only(models, eval_data, tmp_path):
    """The real Evaluator with 2 of mbt-micro's 4 classes plotted: AP for all 4, curves for 2."""
    examples, _, _ = eval_data
    evaluation, _ = run_evaluator(examples, models[0], str(tmp_path), pr_curve_classes=2)
    assert sorted(eval_report.load_eval_summary(evaluation).per_class_ap) == [0, 1, 2, 3]
    curves = eval_report.load_pr_curves(evaluation)
    assert {model: sorted(per_class) for model, per_class in curves.items()} == {
        eval_report.CANDIDATE: [0, 1]}
