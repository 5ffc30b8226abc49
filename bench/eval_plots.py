"""What the Evaluator's per-class plots (`components.eval_config.task_plots`: a
`ConfusionMatrixPlot` at 201 thresholds binarized per class) cost at AudioSet's 527 classes.

TFMA's real evaluation (`tfma.analyze_raw_data`: the ExtractEvaluateAndWriteResults Beam
path the Evaluator runs, minus the model) is run in this process on the same synthetic
AudioSet-like labels and scores with the EvalConfig `build_eval_config` gives the pipeline:
without the plot MetricsSpecs (headline mAP + ExampleCount: the baseline), with the plots at
the default PR-curve cap (`PR_CURVE_CLASSES`), and with a PR curve for every class (the
behaviour before the cap). The scores are given, so the config's model signature fields are
cleared, and so is the change threshold (the Evaluator drops it too when there is no
baseline model). A small warm-up evaluation first keeps Beam's and TFMA's one-off start-up
out of the timings.

    .venv/bin/python bench/eval_plots.py [--examples 2000] [--preset mbt-b16]
"""
import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = REPO  # run as a script, this file's folder would shadow the repo's packages

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow_model_analysis as tfma  # noqa: E402

from components.eval_config import (  # noqa: E402
    PR_CURVE_CLASSES, PR_CURVE_THRESHOLDS, build_eval_config, task_plots)
from mbt_keras import contract  # noqa: E402
from mbt_keras.config import from_preset  # noqa: E402


def audioset_like(num_examples: int, num_classes: int, seed: int = 0) -> pd.DataFrame:
    """Multi-hot labels (1-3 positives per clip, Zipf-skewed class frequencies, as AudioSet's
    "Music"/"Speech" vs its rare classes) and sigmoid scores that lean towards the positives."""
    rng = np.random.default_rng(seed)
    frequency = 1.0 / np.arange(1, num_classes + 1)
    frequency /= frequency.sum()
    labels = np.zeros((num_examples, num_classes), np.float32)
    for row in range(num_examples):
        labels[row, rng.choice(num_classes, rng.integers(1, 4), replace=False, p=frequency)] = 1
    logits = 3.0 * labels - 4.0 + rng.normal(0.0, 1.5, labels.shape)
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return pd.DataFrame({contract.LABEL_KEY: list(labels), contract.OUT_SCORES: list(scores)})


def raw_data_config(eval_config, dropped):
    """`eval_config` for scores given as data: no model signature, no change threshold, and
    without the MetricsSpecs in `dropped`."""
    config = type(eval_config)()
    config.CopyFrom(eval_config)
    for spec in config.model_specs:
        spec.ClearField("signature_name")
        spec.ClearField("preprocessing_function_names")
    kept = [spec for spec in config.metrics_specs if spec not in dropped]
    del config.metrics_specs[:]
    config.metrics_specs.extend(kept)
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if metric.HasField("threshold"):
                metric.threshold.ClearField("change_threshold")
    return config


def evaluate(data: pd.DataFrame, eval_config):
    """(wall s, CPU s, EvalResult) of one TFMA evaluation; CPU covers all the process's threads."""
    with tempfile.TemporaryDirectory() as output:
        wall, cpu = time.perf_counter(), time.process_time()
        result = tfma.analyze_raw_data(data, eval_config, output_path=output)
        return time.perf_counter() - wall, time.process_time() - cpu, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--preset", default="mbt-b16")
    args = parser.parse_args()
    config = from_preset(args.preset)
    num_classes = sum(config.num_classes)
    data = audioset_like(args.examples, num_classes)
    print(f"{os.cpu_count()} cores; {args.preset}: {config.head} head, {num_classes} classes, "
          f"{args.examples} examples ({data[contract.LABEL_KEY].map(np.sum).mean():.2f} "
          f"positives per clip); {PR_CURVE_THRESHOLDS + 1} thresholds per PR curve", flush=True)
    every_class = build_eval_config(config, pr_curve_classes=num_classes)
    evaluate(data.head(50), raw_data_config(every_class, []))  # warm-up
    runs = [("without plots", None), (f"default cap ({PR_CURVE_CLASSES})", None),
            (f"every class ({num_classes})", num_classes)]
    timings = []
    for name, pr_curve_classes in runs:
        eval_config = build_eval_config(config, pr_curve_classes=pr_curve_classes)
        # The baseline is the same config less its plot MetricsSpecs.
        dropped = [] if timings else task_plots(config, pr_curve_classes)
        wall, cpu, result = evaluate(data, raw_data_config(eval_config, dropped))
        overall = result.slicing_metrics[0][1][""][""]
        plotted = len(((result.plots or [(None, None)])[0][1] or {}).get("", {}))
        timings.append((wall, cpu))
        ratio = (f"; {wall / timings[0][0]:.2f}x wall, {cpu / timings[0][1]:.2f}x CPU of "
                 f"without plots" if len(timings) > 1 else "")
        print(f"{name}: wall {wall:.1f} s, CPU {cpu:.1f} s ({1000 * wall / args.examples:.2f} "
              f"ms wall, {1000 * cpu / args.examples:.2f} ms CPU per example); mAP "
              f"{overall['mean_average_precision']['doubleValue']:.4f}, example_count "
              f"{overall['example_count']['doubleValue']:.0f}, plot sub-keys "
              f"{plotted}{ratio}", flush=True)
    extra = (timings[2][1] - timings[0][1]) / args.examples / num_classes
    print(f"one PR curve costs {1e6 * extra:.0f} us CPU per example "
          f"({1e6 * extra * num_classes / 1000:.1f} ms for all {num_classes})")


if __name__ == "__main__":
    main()
