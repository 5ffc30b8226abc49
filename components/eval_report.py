"""The Evaluator's results as TensorBoard summaries next to the training run's logs.

Scalars for the overall slice, a bar chart of AP per class sorted from best to worst (where
a multi-label model fails is easier to see than in 527 scalars), and the blessing decision
as text, so `tensorboard --logdir <pipeline root>` shows training and evaluation together.
"""
import dataclasses
import io
import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import text_format

from components import eval_metrics

SUMMARY_SUBDIR = "evaluation"


@dataclasses.dataclass
class EvalSummary:
    metrics: Dict[str, float]              # overall slice, candidate model
    per_class_ap: Dict[int, float]         # class id -> AP (NaN: no positive example)
    blessed: Optional[bool]                # None when the Evaluator ran without thresholds
    failures: List[str]                    # the thresholds a rejected candidate missed


def load_eval_summary(evaluation_dir: str) -> EvalSummary:
    """Overall-slice metrics and the validation result of one Evaluator output."""
    metrics, per_class = {}, {}
    for slice_metrics in tfma.load_metrics(evaluation_dir):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for entry in slice_metrics.metric_keys_and_values:
            key = entry.key
            if key.is_diff or key.model_name not in ("", tfma.CANDIDATE_KEY):
                continue
            value = entry.value.double_value.value
            if key.HasField("sub_key") and key.sub_key.HasField("class_id"):
                if key.name == eval_metrics.AVERAGE_PRECISION:
                    per_class[key.sub_key.class_id.value] = value
            else:
                metrics[key.name] = value
    blessed, failures = None, []
    if tf.io.gfile.glob(os.path.join(evaluation_dir, tfma.constants.VALIDATIONS_KEY + "*")):
        validation = tfma.load_validation_result(evaluation_dir)
        blessed = bool(validation.validation_ok)
        for per_slice in validation.metric_validations_per_slice:
            failures.extend(_failure_text(f) for f in per_slice.failures)
    return EvalSummary(metrics, per_class, blessed, failures)


def _failure_text(failure) -> str:
    """One line: which metric, its value (or change vs the baseline), and the threshold missed."""
    what = "change vs baseline" if failure.metric_key.is_diff else "value"
    value = failure.metric_value.double_value.value
    threshold = text_format.MessageToString(failure.metric_threshold, as_one_line=True)
    return f"{failure.metric_key.name} {what} {value:.4f} misses {threshold}"


def per_class_ap_chart(per_class_ap: Dict[int, float], class_names: Sequence[str] = (),
                       max_classes: int = 50) -> np.ndarray:
    """RGB uint8 image of a horizontal bar chart of AP per class, best first.

    Shows the best and the worst `max_classes // 2` when there are more classes than that.
    """
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = sorted(((ap, i) for i, ap in per_class_ap.items() if not math.isnan(ap)), reverse=True)
    if len(rows) > max_classes:
        rows = rows[:max_classes // 2] + rows[-(max_classes // 2):]
    names = [class_names[i] if i < len(class_names) else f"class {i}" for _, i in rows]
    figure, axes = plt.subplots(figsize=(6, 1 + 0.25 * max(len(rows), 1)), dpi=100)
    axes.barh(range(len(rows)), [ap for ap, _ in rows], color="tab:blue")
    axes.set_yticks(range(len(rows)), names, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("average precision")
    axes.set_title(f"AP per class, sorted ({len(rows)} of {len(per_class_ap)} classes)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return tf.io.decode_png(buffer.getvalue(), channels=3).numpy()


def blessing_text(summary: EvalSummary) -> str:
    if summary.blessed is None:
        return "no blessing: the EvalConfig has no thresholds"
    if summary.blessed:
        return "BLESSED: every threshold passed; the Pusher may push this model"
    return "NOT BLESSED, not pushed:\n\n" + "\n".join(f"* {f}" for f in summary.failures)


def write_eval_summaries(evaluation_dir: str, log_dir: str, class_names: Sequence[str] = (),
                         step: int = 0) -> EvalSummary:
    """Write scalars, the per-class AP chart and the blessing under `<log_dir>/evaluation`."""
    summary = load_eval_summary(evaluation_dir)
    writer = tf.summary.create_file_writer(os.path.join(log_dir, SUMMARY_SUBDIR))
    with writer.as_default(step=step):
        for name, value in summary.metrics.items():
            tf.summary.scalar(f"eval/{name}", value)
        if summary.per_class_ap:
            chart = per_class_ap_chart(summary.per_class_ap, class_names)
            tf.summary.image("eval/per_class_average_precision", chart[np.newaxis])
        tf.summary.text("eval/blessing", blessing_text(summary))
    writer.close()
    return summary
