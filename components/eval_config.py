"""The Evaluator's EvalConfig, built from the model's task (paper section 4.1).

Multi-label (AudioSet): mAP and AP per class. Single-label (VGGSound): top-1 and top-5, and
AP per class (one against the rest) for the report.
Verb+noun (Epic-Kitchens): verb, noun and action top-1. The blessing gate sits on the
headline metric (the first one): an absolute lower bound `min_metric`, and "no worse than
the latest blessed model by more than `max_metric_drop`" when the pipeline resolves a
baseline. A lower bound is always set, because without any threshold the Evaluator writes no
blessing. A deliberately worse model fails the second test and is not pushed.
Plots (task_plots) give `mbt report` a PR curve per class and, for single-label heads, the
confusion matrix, computed by the Evaluator over the whole eval split. PR curves are capped
at `pr_curve_classes` classes (default PR_CURVE_CLASSES): each costs the Evaluator about
60 us of CPU per example, so at AudioSet's 527 classes curves for every class made the
evaluation 10x as expensive as without plots, the default cap 1.6x (bench/eval_plots.py,
docs/benchmarks.md). A head with more classes gets curves for class ids
0..pr_curve_classes-1; the metrics (mAP and AP per class, top-k) always cover every class.
"""
import json
from typing import Optional, Sequence

from tensorflow_model_analysis.proto import config_pb2

from components import eval_metrics
from mbt_keras import contract
from mbt_keras.config import ModelConfig


def task_metrics(config: ModelConfig):
    """[(class name, kwargs)] of the task's metrics; the first is the headline metric."""
    if config.head == "multilabel":
        return [("MeanAveragePrecision", {"name": eval_metrics.MEAN_AVERAGE_PRECISION})]
    if config.head == "singlelabel":
        top_5 = min(5, config.num_classes[0])
        # AP per class (one class against the rest) too, so a report can say which classes
        # a single-label model solves, not only how often its top-1 is right.
        return [("TopKAccuracy", {"name": eval_metrics.TOP_1, "k": 1}),
                ("TopKAccuracy", {"name": eval_metrics.TOP_5, "k": top_5}),
                ("MeanAveragePrecision", {"name": eval_metrics.MEAN_AVERAGE_PRECISION})]
    verbs, nouns = config.num_classes
    return [("ActionAccuracy", {"name": eval_metrics.ACTION_TOP_1, "num_verbs": verbs}),
            ("TopKAccuracy", {"name": eval_metrics.VERB_TOP_1, "k": 1, "num_classes": verbs}),
            ("TopKAccuracy", {"name": eval_metrics.NOUN_TOP_1, "k": 1, "offset": verbs,
                              "num_classes": nouns})]


def headline_metric(config: ModelConfig) -> str:
    """Name of the metric the blessing is decided on."""
    return task_metrics(config)[0][1]["name"]


# Per-class precision-recall curves (TFMA's ConfusionMatrixPlot per class) are counted at
# score thresholds i / PR_CURVE_THRESHOLDS, i = 0..200: a fifth of TFMA's default cost.
PR_CURVE_THRESHOLDS = 200
# Heads with up to this many classes get a PR curve for every class (every preset but the
# 527-class mbt-b16 ones); larger heads for their first PR_CURVE_CLASSES class ids.
PR_CURVE_CLASSES = 32


def task_plots(config: ModelConfig, pr_curve_classes: Optional[int] = None):
    """MetricsSpecs of the Evaluator's plots: a PR curve for each of the first
    `pr_curve_classes` classes (0: none; None: PR_CURVE_CLASSES); the confusion matrix too for
    a single-label head (the one task where each clip has exactly one true class)."""
    if pr_curve_classes is None:
        pr_curve_classes = PR_CURVE_CLASSES
    if pr_curve_classes < 0:
        raise ValueError(f"pr_curve_classes={pr_curve_classes}: must be >= 0 (0: no PR curves)")
    curve_classes = min(pr_curve_classes, sum(config.num_classes))
    plots = [config_pb2.MetricsSpec(
        metrics=[config_pb2.MetricConfig(class_name="ConfusionMatrixPlot",
                                   config=json.dumps({"num_thresholds": PR_CURVE_THRESHOLDS}))],
        binarize=config_pb2.BinarizationOptions(
            class_ids={"values": list(range(curve_classes))}))] if curve_classes else []
    if config.head == "singlelabel":
        plots.append(config_pb2.MetricsSpec(metrics=[config_pb2.MetricConfig(
            class_name="MultiClassConfusionMatrixPlot")]))
    return plots


def build_eval_config(config: ModelConfig, *, min_metric: float = 0.0,
                      max_metric_drop: float = 0.0,
                      slice_features: Sequence[str] = (),
                      pr_curve_classes: Optional[int] = None) -> config_pb2.EvalConfig:
    """EvalConfig over the exported model's SIG_EXAMPLES scores and SIG_LABELS labels.

    Blessed when headline >= min_metric and headline >= baseline headline - max_metric_drop.
    PR curves for the first `pr_curve_classes` classes (task_plots).
    """
    gate = config_pb2.MetricThreshold(
        value_threshold=config_pb2.GenericValueThreshold(lower_bound={"value": min_metric}),
        change_threshold=config_pb2.GenericChangeThreshold(
            direction=config_pb2.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max_metric_drop}))
    metrics = [config_pb2.MetricConfig(class_name="ExampleCount")]
    for index, (class_name, kwargs) in enumerate(task_metrics(config)):
        metrics.append(config_pb2.MetricConfig(
            class_name=class_name, module=eval_metrics.__name__, config=json.dumps(kwargs),
            threshold=gate if index == 0 else None))
    return config_pb2.EvalConfig(
        model_specs=[config_pb2.ModelSpec(
            signature_name=contract.SIG_EXAMPLES,
            preprocessing_function_names=[contract.SIG_LABELS],
            label_key=contract.LABEL_KEY,
            prediction_key=contract.OUT_SCORES)],
        metrics_specs=([config_pb2.MetricsSpec(metrics=metrics)]
                       + task_plots(config, pr_curve_classes)),
        slicing_specs=[config_pb2.SlicingSpec()] + [config_pb2.SlicingSpec(feature_keys=[f])
                                              for f in slice_features])
