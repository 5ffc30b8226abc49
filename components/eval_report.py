"""The Evaluator's results as TensorBoard summaries next to the training run's logs.

Everything comes from the Evaluator's output (TFMA metrics, plots, validations and the
EvalConfig it ran), so the report shows what the blessing was decided on, over the whole
eval split, and needs neither the model nor the data again:
- scalars for the overall slice, per evaluated model (candidate, and the baseline when the
  pipeline resolved one);
- AP per class of the candidate beside the baseline's: a bar chart (best to worst; where
  a multi-label model fails is easier to see than in 527 scalars) and a table;
- a precision-recall curve per class, one run per model so TensorBoard draws the candidate
  and the baseline in one chart (TensorBoard's PR-curve plugin), drawn from
  the confusion matrices TFMA counted at PR_CURVE_THRESHOLDS evenly spaced score thresholds
  (components/eval_config.py), not re-predicted;
- the confusion matrix of a single-label head, as an image;
- the blessing decision with every threshold and the values it was checked against, as text.
"""
import dataclasses
import json
import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import text_format
from tensorflow_model_analysis.writers import eval_config_writer

from components import eval_metrics, figures

SUMMARY_SUBDIR = "evaluation"
CANDIDATE, BASELINE = tfma.CANDIDATE_KEY, tfma.BASELINE_KEY
# TensorBoard tags (the test checks that a real TensorBoard serves them).
TAG_PER_CLASS_AP = "eval/per_class_average_precision"
TAG_PER_CLASS_AP_TABLE = "eval/per_class_average_precision_table"
TAG_CONFUSION_MATRIX = "eval/confusion_matrix"
TAG_BLESSING = "eval/blessing"
PR_CURVE_PREFIX = "eval_pr"   # run evaluation/<model>, tag eval_pr/<class>/pr_curves
MAX_LISTED_CLASSES = 32  # `mbt report` lists every class up to this many
# TensorBoard's PR-curve tensor rows (tensorboard.plugins.pr_curve.metadata).
PR_FIELDS = ("true_positives", "false_positives", "true_negatives", "false_negatives",
             "precision", "recall")


@dataclasses.dataclass
class EvalSummary:
    metrics: Dict[str, float]              # overall slice, candidate model
    per_class_ap: Dict[int, float]         # class id -> AP (NaN: no positive example), candidate
    blessed: Optional[bool]                # None when the Evaluator ran without thresholds
    failures: List[str]                    # the thresholds a rejected candidate missed
    # Every evaluated model ("candidate", and "baseline" when there was one).
    model_metrics: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    model_per_class_ap: Dict[str, Dict[int, float]] = dataclasses.field(default_factory=dict)
    changes: Dict[str, float] = dataclasses.field(default_factory=dict)  # candidate - baseline
    thresholds: List[str] = dataclasses.field(default_factory=list)      # one line per gate


def _model(key) -> str:
    return key.model_name or CANDIDATE


def load_eval_summary(evaluation_dir: str) -> EvalSummary:
    """Overall-slice metrics of every model, the validation result and the thresholds."""
    model_metrics, per_class, changes = {}, {}, {}
    for slice_metrics in tfma.load_metrics(evaluation_dir):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for entry in slice_metrics.metric_keys_and_values:
            key = entry.key
            value = entry.value.double_value.value
            class_id = (key.sub_key.class_id.value
                        if key.HasField("sub_key") and key.sub_key.HasField("class_id") else None)
            if key.is_diff:
                if class_id is None:
                    changes[key.name] = value
            elif class_id is None:
                model_metrics.setdefault(_model(key), {})[key.name] = value
            elif key.name == eval_metrics.AVERAGE_PRECISION:
                per_class.setdefault(_model(key), {})[class_id] = value
    blessed, failures = None, []
    if tf.io.gfile.glob(os.path.join(evaluation_dir, tfma.constants.VALIDATIONS_KEY + "*")):
        validation = tfma.load_validation_result(evaluation_dir)
        blessed = bool(validation.validation_ok)
        for per_slice in validation.metric_validations_per_slice:
            failures.extend(_failure_text(f) for f in per_slice.failures)
    return EvalSummary(model_metrics.get(CANDIDATE, {}), per_class.get(CANDIDATE, {}), blessed,
                       failures, model_metrics, per_class, changes,
                       _threshold_lines(evaluation_dir, model_metrics, changes))


def _failure_text(failure) -> str:
    """One line: which metric, its value (or change vs the baseline), and the threshold missed."""
    what = "change vs baseline" if failure.metric_key.is_diff else "value"
    value = failure.metric_value.double_value.value
    threshold = text_format.MessageToString(failure.metric_threshold, as_one_line=True)
    return f"{failure.metric_key.name} {what} {value:.4f} misses {threshold}"


def _threshold_lines(evaluation_dir, model_metrics, changes) -> List[str]:
    """Each gate of the EvalConfig the Evaluator ran, with the values it was checked against.

    Without a baseline (the first blessed model) the Evaluator runs a config with the
    change threshold removed, so only the value threshold is listed then.
    """
    eval_config = eval_config_writer.load_eval_run(evaluation_dir)[0]
    candidate = model_metrics.get(CANDIDATE, {})
    lines = []
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            if not metric.HasField("threshold"):
                continue
            name = json.loads(metric.config or "{}").get("name", metric.class_name)
            value = candidate.get(name, float("nan"))
            bound = metric.threshold.value_threshold
            if bound.HasField("lower_bound"):
                lines.append(f"{name} >= {bound.lower_bound.value:.4f}: candidate {value:.4f}")
            if bound.HasField("upper_bound"):
                lines.append(f"{name} <= {bound.upper_bound.value:.4f}: candidate {value:.4f}")
            change = metric.threshold.change_threshold
            if change.HasField("absolute"):
                base = model_metrics.get(BASELINE, {}).get(name, float("nan"))
                against = f"baseline {base:.4f}, change {changes.get(name, value - base):+.4f}"
                margin = change.absolute.value
                lines.append(f"{name} >= baseline {'+' if margin > 0 else '-'} {abs(margin):.4f}: "
                             f"candidate {value:.4f}, {against}")
    return lines


def blessing_text(summary: EvalSummary) -> str:
    if summary.blessed is None:
        return "no blessing: the EvalConfig has no thresholds"
    if summary.blessed:
        head = "BLESSED: every threshold passed; the Pusher may push this model"
    else:
        head = "NOT BLESSED, not pushed:\n\n" + "\n".join(f"* {f}" for f in summary.failures)
    if not summary.thresholds:
        return head
    return head + "\n\nthresholds:\n\n" + "\n".join(f"* {t}" for t in summary.thresholds)


# --- plots from the Evaluator's output ------------------------------------------------------

def _overall_plots(evaluation_dir: str) -> list:
    """The plot entries of the whole eval split (TFMA's overall slice), read once."""
    return [entry for slice_plots in tfma.load_plots(evaluation_dir)
            if not slice_plots.slice_key.single_slice_keys
            for entry in slice_plots.plot_keys_and_values]


def load_pr_curves(evaluation_dir: str, plots: Optional[list] = None
                   ) -> Dict[str, Dict[int, np.ndarray]]:
    """{model: {class id: [6, n] TensorBoard PR rows}} from TFMA's per-class matrices
    (`plots`: `_overall_plots(evaluation_dir)` when the caller already read them).

    TFMA adds a threshold just below 0 to the n evenly spaced ones in [0, 1]; it is dropped
    so the rows sit at TensorBoard's thresholds i / (n - 1).
    """
    curves = {}
    for entry in _overall_plots(evaluation_dir) if plots is None else plots:
        matrices = [m for m in entry.value.confusion_matrix_at_thresholds.matrices
                    if m.threshold >= 0.0]
        if not matrices or not entry.key.sub_key.HasField("class_id"):
            continue
        rows = np.array([[getattr(m, field) for m in matrices] for field in PR_FIELDS])
        curves.setdefault(_model(entry.key), {})[entry.key.sub_key.class_id.value] = rows
    return curves


def load_confusion_matrix(evaluation_dir: str, plots: Optional[list] = None
                          ) -> Optional[np.ndarray]:
    """[actual, predicted] counts of the candidate (single-label heads), or None."""
    for entry in _overall_plots(evaluation_dir) if plots is None else plots:
        matrices = entry.value.multi_class_confusion_matrix_at_thresholds.matrices
        if not matrices or _model(entry.key) != CANDIDATE:
            continue
        cells = [(e.actual_class_id, e.predicted_class_id, e.num_weighted_examples)
                 for e in matrices[0].entries]
        size = 1 + max(max(a, p) for a, p, _ in cells)
        counts = np.zeros((size, size))
        for actual, predicted, count in cells:
            if actual >= 0 and predicted >= 0:
                counts[actual, predicted] += count
        return counts
    return None


def _name(class_names: Sequence[str], index: int) -> str:
    return class_names[index] if index < len(class_names) else f"class {index}"


def _labelled(class_names: Sequence[str], groups: Optional[Dict[str, str]], index: int) -> str:
    """The class's name, with its group (from the class map) when it has one."""
    name = _name(class_names, index)
    group = (groups or {}).get(name)
    return f"{name} ({group})" if group else name


def ranked_per_class_ap(per_class_ap: Dict[int, float]) -> List[Tuple[int, float]]:
    """(class id, AP) best first (ties by class id); classes without a positive eval
    example (AP NaN) last, as nothing can be said about them."""
    return sorted(per_class_ap.items(),
                  key=lambda item: (math.isnan(item[1]), -item[1] if item[1] == item[1] else 0,
                                    item[0]))


def per_class_ap_lines(per_class_ap: Dict[int, float], class_names: Sequence[str] = (),
                       groups: Optional[Dict[str, str]] = None,
                       max_listed: int = MAX_LISTED_CLASSES) -> List[str]:
    """AP per class for a terminal, best first: every class, with its group, when there are
    at most `max_listed` (a few classes are read one by one); else the best and the worst."""
    ranked = ranked_per_class_ap(per_class_ap)
    if not ranked:
        return []
    if len(ranked) > max_listed:
        known = [(c, ap) for c, ap in ranked if ap == ap] or ranked
        (best, best_ap), (worst, worst_ap) = known[0], known[-1]
        return [f"AP per class ({len(ranked)} classes): best {best_ap:.3f} "
                f"({_labelled(class_names, groups, best)}), worst {worst_ap:.3f} "
                f"({_labelled(class_names, groups, worst)})"]
    width = max(len(_name(class_names, c)) for c, _ in ranked)
    lines = [f"AP per class ({len(ranked)} classes, best first):"]
    for class_id, ap in ranked:
        value = f"{ap:.3f}" if ap == ap else "  n/a"  # NaN: no positive example in eval
        group = (groups or {}).get(_name(class_names, class_id), "")
        lines.append(f"  {value}  {_name(class_names, class_id):<{width}}  {group}".rstrip())
    return lines


def _png(figure) -> np.ndarray:
    return figures.rgb_array(figures.png_bytes(figure))


def per_class_ap_chart(per_class_ap: Dict[str, Dict[int, float]], class_names: Sequence[str] = (),
                       max_classes: int = 50,
                       groups: Optional[Dict[str, str]] = None) -> np.ndarray:
    """RGB uint8 image: AP per class as horizontal bars, one bar per model, best first.

    `per_class_ap` is {model: {class id: AP}}; classes are ranked by the first model's AP,
    showing the best and the worst `max_classes // 2` when there are more than that; a class
    is labelled with its name and its group (`groups`: {name: group}, from the class map).
    """
    plt = figures.pyplot()
    models = list(per_class_ap)
    first = per_class_ap[models[0]]
    rows = [(ap, i) for i, ap in ranked_per_class_ap(first) if not math.isnan(ap)]
    if len(rows) > max_classes:
        rows = rows[:max_classes // 2] + rows[-(max_classes // 2):]
    height = 0.8 / len(models)
    figure, axes = plt.subplots(figsize=(6, 1.2 + 0.25 * len(models) * max(len(rows), 1)), dpi=100)
    for k, model in enumerate(models):
        values = [per_class_ap[model].get(i, float("nan")) for _, i in rows]
        axes.barh(np.arange(len(rows)) + (k - (len(models) - 1) / 2) * height, values, height,
                  label=model)
    axes.set_yticks(range(len(rows)), [_labelled(class_names, groups, i) for _, i in rows],
                    fontsize=7)
    axes.invert_yaxis()
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("average precision")
    axes.set_title(f"AP per class, sorted by {models[0]} ({len(rows)} of {len(first)} classes)")
    if len(models) > 1:
        axes.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    return _png(figure)


def per_class_ap_table(per_class_ap: Dict[str, Dict[int, float]],
                       class_names: Sequence[str] = (),
                       groups: Optional[Dict[str, str]] = None) -> str:
    """Markdown table, best first: class (with its group), AP of each model, and the change
    when there is a baseline."""
    models = list(per_class_ap)
    diff = CANDIDATE in models and BASELINE in models
    lines = ["| class | " + " | ".join(models) + (" | change |" if diff else " |"),
             "|---|" + "---:|" * (len(models) + diff)]
    for i, _ in ranked_per_class_ap(per_class_ap[models[0]]):
        cells = [f"{per_class_ap[m].get(i, float('nan')):.4f}" for m in models]
        if diff:
            cells.append(f"{per_class_ap[CANDIDATE][i] - per_class_ap[BASELINE].get(i, float('nan')):+.4f}")
        lines.append(f"| {_labelled(class_names, groups, i)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def confusion_matrix_image(counts: np.ndarray, class_names: Sequence[str] = ()) -> np.ndarray:
    """RGB uint8 image of a confusion matrix (rows: true class, columns: top-1 prediction)."""
    plt = figures.pyplot()
    n = counts.shape[0]
    size = min(2 + 0.4 * n, 16)
    figure, axes = plt.subplots(figsize=(size, size), dpi=100)
    axes.imshow(counts, cmap="Blues")
    names = [_name(class_names, i) for i in range(n)]
    axes.set_xticks(range(n), names, rotation=90, fontsize=7)
    axes.set_yticks(range(n), names, fontsize=7)
    axes.set_xlabel("predicted (top-1)")
    axes.set_ylabel("true")
    if n <= 30:
        for (row, column), count in np.ndenumerate(counts):
            if count:
                axes.text(column, row, f"{count:g}", ha="center", va="center", fontsize=7,
                          color="white" if count > counts.max() / 2 else "black")
    axes.set_title(f"confusion matrix ({counts.sum():g} clips)")
    figure.tight_layout()
    return _png(figure)


def tag_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "_"


def write_pr_curve(class_id: int, class_name: str, rows: np.ndarray, step: int):
    """One PR curve in TensorBoard's pr_curves format (its raw_data_pb), via tf.summary."""
    from tensorboard.plugins.pr_curve import summary as pr_curve_summary
    proto = pr_curve_summary.raw_data_pb(
        f"{PR_CURVE_PREFIX}/{class_id:03d}_{tag_part(class_name)}",
        *(rows[k] for k in range(len(PR_FIELDS))), num_thresholds=rows.shape[1],
        display_name=class_name,
        description=f"precision vs recall of class {class_id} ({class_name}) on the eval "
                    "split, from the Evaluator's confusion matrices; one run per model")
    (value,) = proto.value
    tf.summary.write(value.tag, tf.make_ndarray(value.tensor), step=step, metadata=value.metadata)


def write_eval_summaries(evaluation_dir: str, log_dir: str, class_names: Sequence[str] = (),
                         step: int = 0, groups: Optional[Dict[str, str]] = None) -> EvalSummary:
    """Write everything listed in the module docstring under `<log_dir>/evaluation`
    (`groups`: {class name: group} from the class map, shown beside the names)."""
    summary = load_eval_summary(evaluation_dir)
    plots = _overall_plots(evaluation_dir)
    curves = load_pr_curves(evaluation_dir, plots)
    confusion = load_confusion_matrix(evaluation_dir, plots)
    writer = tf.summary.create_file_writer(os.path.join(log_dir, SUMMARY_SUBDIR))
    with writer.as_default(step=step):
        for model, values in summary.model_metrics.items():
            prefix = "eval" if model == CANDIDATE else f"eval_{model}"
            for name, value in values.items():
                tf.summary.scalar(f"{prefix}/{name}", value)
        if summary.per_class_ap:
            models = {m: summary.model_per_class_ap[m] for m in (CANDIDATE, BASELINE)
                      if m in summary.model_per_class_ap}
            tf.summary.image(TAG_PER_CLASS_AP, per_class_ap_chart(
                models, class_names, groups=groups)[np.newaxis])
            tf.summary.text(TAG_PER_CLASS_AP_TABLE, per_class_ap_table(models, class_names, groups))
        if confusion is not None:
            tf.summary.image(TAG_CONFUSION_MATRIX,
                             confusion_matrix_image(confusion, class_names)[np.newaxis])
        tf.summary.text(TAG_BLESSING, blessing_text(summary))
    writer.close()
    # One run per model with the same tags, so TensorBoard overlays candidate and baseline.
    for model, by_class in curves.items():
        writer = tf.summary.create_file_writer(os.path.join(log_dir, SUMMARY_SUBDIR, model))
        with writer.as_default(step=step):
            for class_id, rows in sorted(by_class.items()):
                write_pr_curve(class_id, _name(class_names, class_id), rows, step)
        writer.close()
    return summary
