"""What `mbt report` writes for TensorBoard from a real Evaluator run, and that a real
`tensorboard` process serves it: per-class PR curves (candidate and baseline overlaid), AP
per class side by side, the single-label confusion matrix and the blessing with thresholds."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from components import eval_metrics, eval_report
from components.eval_config import PR_CURVE_THRESHOLDS
from mbt_keras import contract
from mbt_keras.config import from_preset
from tests.components.test_eval_config import (  # noqa: F401 (module fixtures)
    NUM_CLIPS, SERVING_SUBDIR, _scores, eval_data, examples_artifact, models, run_evaluator)
from tests.mbt_keras.tfrecord_fixtures import sequence_example

NAMES = ["speech", "music", "dog bark", "engine"]
SINGLE = from_preset("mbt-micro", head="singlelabel")


@pytest.fixture(scope="module")
def compared(models, eval_data, tmp_path_factory):
    """(evaluation dir, candidate, baseline) of a candidate evaluated against a baseline."""
    examples, _, _ = eval_data
    run_dir = str(tmp_path_factory.mktemp("compared"))
    evaluation, _ = run_evaluator(examples, models[0], run_dir, baseline=models[1],
                                  min_metric=0.0, max_metric_drop=0.0)
    return evaluation, models[0], models[1]


@pytest.fixture(scope="module")
def single_label(tmp_path_factory):
    """(evaluation dir, scores [N, 4], labels [N]) of a single-label mbt-micro model."""
    from tests.serving.conftest import export_micro

    root = tmp_path_factory.mktemp("single")
    rng = np.random.default_rng(3)
    labels = np.arange(NUM_CLIPS) % 4
    clips = [sequence_example(rng.integers(0, 256, (8, 40, 48, 3), dtype=np.uint8),
                              rng.normal(-6.0, 3.0, (100, contract.MEL_BINS)).astype(np.float32),
                              [int(label)], fps=8.0, clip_id=f"clip{i}")
             for i, label in enumerate(labels)]
    examples = examples_artifact(root / "examples", clips)
    model = str(root / "model")
    export_micro(os.path.join(model, SERVING_SUBDIR), 5, SINGLE, NAMES)
    evaluation, _ = run_evaluator(examples, model, str(root / "run"), config=SINGLE,
                                  min_metric=0.0)
    scores, _ = _scores(model, [c.SerializeToString() for c in clips])
    return evaluation, scores, labels


# Batch-size-dependent kernels (oneDNN, TF 2.21) move an untrained micro model's scores by
# up to ~1e-4 between the Evaluator's batches and ours.
TIE = 1e-3


def test_pr_curves_are_the_evaluators_counts_at_evenly_spaced_thresholds(compared, eval_data):
    evaluation, candidate, baseline = compared
    _, serialized, labels = eval_data
    curves = eval_report.load_pr_curves(evaluation)
    assert sorted(curves) == [eval_report.BASELINE, eval_report.CANDIDATE]
    for model, name in ((candidate, eval_report.CANDIDATE), (baseline, eval_report.BASELINE)):
        scores, _ = _scores(model, serialized)
        assert sorted(curves[name]) == [0, 1, 2, 3]
        for class_id, rows in curves[name].items():
            assert rows.shape == (6, PR_CURVE_THRESHOLDS + 1)
            thresholds = np.arange(PR_CURVE_THRESHOLDS + 1) / PR_CURVE_THRESHOLDS
            positive = labels[:, class_id].astype(bool)
            # The Evaluator scores its own batches (4 views each): a score within TIE of a
            # threshold may land on either side of it, every other one must count as here.
            for kind, rows_kind, truth in (("TP", rows[0], positive), ("FP", rows[1], ~positive)):
                surely = ((scores[:, class_id][None, :] > thresholds[:, None] + TIE)
                          & truth).sum(1)
                maybe = ((scores[:, class_id][None, :] > thresholds[:, None] - TIE)
                         & truth).sum(1)
                assert np.all((surely <= rows_kind) & (rows_kind <= maybe)), (kind, class_id)
            np.testing.assert_array_equal(rows[0] + rows[3], positive.sum())        # TP + FN
            kept = rows[0] + rows[1] > 0
            np.testing.assert_allclose(rows[4][kept], rows[0][kept] / (rows[0] + rows[1])[kept])


def test_blessing_text_names_each_threshold_and_the_values_checked(compared):
    summary = eval_report.load_eval_summary(compared[0])
    candidate = summary.model_metrics[eval_report.CANDIDATE][eval_metrics.MEAN_AVERAGE_PRECISION]
    baseline = summary.model_metrics[eval_report.BASELINE][eval_metrics.MEAN_AVERAGE_PRECISION]
    assert summary.thresholds == [
        f"mean_average_precision >= 0.0000: candidate {candidate:.4f}",
        f"mean_average_precision >= baseline - 0.0000: candidate {candidate:.4f}, "
        f"baseline {baseline:.4f}, change {candidate - baseline:+.4f}"]
    text = eval_report.blessing_text(summary)
    assert text.startswith("BLESSED" if candidate >= baseline else "NOT BLESSED")
    assert text.endswith("\n".join(f"* {line}" for line in summary.thresholds))
    table = eval_report.per_class_ap_table(summary.model_per_class_ap, NAMES).splitlines()
    assert table[0] == "| class | candidate | baseline | change |"
    ap = summary.model_per_class_ap
    assert (f"| dog bark | {ap['candidate'][2]:.4f} | {ap['baseline'][2]:.4f} | "
            f"{ap['candidate'][2] - ap['baseline'][2]:+.4f} |") in table
    candidate_column = [float(row.split("|")[2]) for row in table[2:]]
    assert candidate_column == sorted(candidate_column, reverse=True)


def test_single_label_confusion_matrix_counts_top1_predictions(single_label):
    evaluation, scores, labels = single_label
    expected = np.zeros((4, 4))
    np.add.at(expected, (labels, scores.argmax(1)), 1)
    np.testing.assert_array_equal(eval_report.load_confusion_matrix(evaluation), expected)
    image = eval_report.confusion_matrix_image(expected, NAMES)
    assert image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) > 100
    summary = eval_report.load_eval_summary(evaluation)
    # No baseline: the Evaluator drops the change threshold from the config it runs.
    assert summary.thresholds == [f"{eval_metrics.TOP_1} >= 0.0000: candidate "
                                  f"{summary.metrics[eval_metrics.TOP_1]:.4f}"]
    # A single-label head is reported per class too (one class against the rest).
    assert sorted(summary.per_class_ap) == [0, 1, 2, 3]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port, path, **query):
    url = f"http://127.0.0.1:{port}/data/plugin/{path}"
    with urllib.request.urlopen(url + ("?" + urllib.parse.urlencode(query) if query else ""),
                                timeout=10) as response:
        return json.loads(response.read())


def test_a_real_tensorboard_serves_the_evaluation(compared, single_label, tmp_path):
    log_dir = str(tmp_path / "logs")
    summary = eval_report.write_eval_summaries(compared[0], log_dir, NAMES, step=3)
    eval_report.write_eval_summaries(single_label[0], str(tmp_path / "logs" / "single"), NAMES)
    curves = eval_report.load_pr_curves(compared[0])
    port = _free_port()
    tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    process = subprocess.Popen([tensorboard, "--logdir", str(tmp_path / "logs"), "--host",
                                "127.0.0.1", "--port", str(port), "--load_fast=false",
                                "--reload_interval", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, tags = time.monotonic() + 120, {}
        while time.monotonic() < deadline and len(tags) < 3:
            time.sleep(1)
            try:
                tags = _get(port, "pr_curves/tags")
            except OSError:
                continue
        pr_tags = [f"eval_pr/{i:03d}_{n.replace(' ', '_')}/pr_curves" for i, n in enumerate(NAMES)]
        assert {run: sorted(t) for run, t in tags.items()} == {
            "evaluation/candidate": pr_tags, "evaluation/baseline": pr_tags,
            "single/evaluation/candidate": pr_tags}
        assert tags["evaluation/baseline"][pr_tags[2]]["displayName"] == "dog bark"
        (served,) = _get(port, "pr_curves/pr_curves", run="evaluation/baseline",
                         tag=pr_tags[2])["evaluation/baseline"]
        rows = curves[eval_report.BASELINE][2]
        n = len(served["precision"])  # the plugin stops where nothing is predicted positive
        assert served["step"] == 3 and n >= 2
        np.testing.assert_allclose(served["precision"], rows[4][:n], atol=1e-6)
        np.testing.assert_allclose(served["recall"], rows[5][:n], atol=1e-6)
        np.testing.assert_allclose(served["thresholds"], np.arange(n) / PR_CURVE_THRESHOLDS,
                                   atol=1e-6)
        images = _get(port, "images/tags")
        assert set(images["evaluation"]) == {eval_report.TAG_PER_CLASS_AP}
        # Single-label: top-1/top-5 (no AP per class), and the confusion matrix.
        # A single-label run: its confusion matrix, and AP per class (one against the rest).
        assert set(images["single/evaluation"]) == {eval_report.TAG_CONFUSION_MATRIX,
                                                    eval_report.TAG_PER_CLASS_AP}
        scalars = _get(port, "scalars/tags")["evaluation"]
        assert {"eval/mean_average_precision", "eval_baseline/mean_average_precision"} <= set(scalars)
        text = _get(port, "text/text", run="evaluation", tag=eval_report.TAG_BLESSING)
        assert "thresholds:" in text[0]["text"]  # rendered as HTML: compare what needs no escaping
        assert summary.thresholds[1].split(">= ")[1] in text[0]["text"]
        assert eval_report.TAG_PER_CLASS_AP_TABLE in _get(port, "text/tags")["evaluation"]
    finally:
        process.terminate()
        process.wait(timeout=30)


AP = {0: 0.5, 1: 1.0, 2: float("nan"), 3: 0.75}
GROUPS = {"speech": "voice", "dog bark": "animal", "engine": "machine"}


def test_report_lists_every_class_by_name_best_first_with_its_group():
    assert eval_report.per_class_ap_lines(AP, NAMES, GROUPS) == [
        "AP per class (4 classes, best first):",
        "  1.000  music",
        "  0.750  engine    machine",
        "  0.500  speech    voice",
        "    n/a  dog bark  animal"]


def test_report_names_only_the_best_and_worst_class_beyond_the_listed_count():
    assert eval_report.per_class_ap_lines(AP, NAMES, GROUPS, max_listed=3) == [
        "AP per class (4 classes): best 1.000 (music), worst 0.500 (speech (voice))"]
    assert eval_report.per_class_ap_lines({5: 0.2, 1: 0.9}, NAMES, max_listed=1) == [
        "AP per class (2 classes): best 0.900 (music), worst 0.200 (class 5)"]


def test_tensorboard_table_names_classes_with_their_group_best_first():
    table = eval_report.per_class_ap_table({eval_report.CANDIDATE: AP}, NAMES, GROUPS)
    assert table.splitlines()[2:] == ["| music | 1.0000 |", "| engine (machine) | 0.7500 |",
                                      "| speech (voice) | 0.5000 |",
                                      "| dog bark (animal) | nan |"]
