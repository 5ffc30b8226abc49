"""`mbt report RUN_DIR`: one screen on a pipeline run: metrics, blessing, push, logs.

RUN_DIR is the pipeline root (`<root>/<component>/<output>/<execution id>/`); the newest
execution of each component is reported. The evaluation is also written to TensorBoard
next to the Trainer's logs (components/eval_report.py; step = the Evaluator's execution id),
so the command can be re-run on any finished run.
"""
import argparse
import os

from mbt_keras.user_error import UserError, existing_folder
from pipeline.settings import PipelineSettings

REPORTED = ("Trainer", "Evaluator", "Pusher")


def add_arguments(parser: argparse.ArgumentParser):
    defaults = PipelineSettings()
    parser.add_argument("run_dir", help="pipeline root of the run")
    parser.add_argument("--serving-base", default=defaults.serving_base,
                        help="where the Pusher pushes (<base>/<model-name>/<version>)")
    parser.add_argument("--model-name", default=defaults.model_name)
    parser.add_argument("--class-map", default=defaults.class_map,
                        help="CSV of index,name[,group] (names and groups for AP per class)")


def newest_output(run_dir: str, component: str, output: str):
    """`<run_dir>/<component>/<output>/<newest execution id>`, or None."""
    parent = os.path.join(run_dir, component, output)
    ids = [int(n) for n in os.listdir(parent) if n.isdigit()] if os.path.isdir(parent) else []
    return os.path.join(parent, str(max(ids))) if ids else None


def class_names_and_groups(path):
    """([class names by index], {name: group}) from a class map file; nothing without one."""
    if not path or not os.path.isfile(path):
        return [], {}
    from components.preprocess.label_files import class_names, read_class_groups, read_class_map
    return class_names(read_class_map(path)), read_class_groups(path)


def run(args) -> int:
    existing_folder(args.run_dir, "RUN_DIR")
    if not any(os.path.isdir(os.path.join(args.run_dir, c)) for c in REPORTED):
        raise UserError(f"RUN_DIR {args.run_dir} holds no {', '.join(REPORTED)} outputs: pass "
                        "the pipeline root of a run (--pipeline-root of `mbt pipeline run`)")
    from components import eval_report

    evaluation = newest_output(args.run_dir, "Evaluator", "evaluation")
    model_run = newest_output(args.run_dir, "Trainer", "model_run")
    print(f"run:          {os.path.abspath(args.run_dir)}")
    if evaluation is None:
        print("evaluation:   none yet (the Evaluator has not run)")
        return 1
    log_dir = model_run or evaluation
    names, groups = class_names_and_groups(args.class_map)
    summary = eval_report.write_eval_summaries(evaluation, log_dir, names,
                                               step=int(os.path.basename(evaluation)),
                                               groups=groups)
    print(f"evaluation:   {evaluation}")
    for name, value in sorted(summary.metrics.items()):
        print(f"  {name:<28} {value:.4f}")
    for line in eval_report.per_class_ap_lines(summary.per_class_ap, names, groups):
        print(f"  {line}")
    baseline = summary.model_metrics.get(eval_report.BASELINE)
    if baseline:
        print("  baseline (the blessed model it was compared to):")
        for name, value in sorted(baseline.items()):
            print(f"  {name:<28} {value:.4f}")
    print("blessing:     " + eval_report.blessing_text(summary).replace("\n\n", "\n  ")
          .replace("\n*", "\n  *"))
    pushed_model = newest_output(args.run_dir, "Pusher", "pushed_model")
    if pushed_model is not None:
        print(f"this run:     {'pushed' if os.listdir(pushed_model) else 'not pushed'} by the Pusher")
    model_dir = os.path.join(args.serving_base, args.model_name)
    versions = sorted(int(v) for v in os.listdir(model_dir) if v.isdigit()) if os.path.isdir(
        model_dir) else []
    print(f"serving:      {os.path.join(model_dir, str(versions[-1])) if versions else 'nothing'}"
          f"{' (serving version ' + str(versions[-1]) + ')' if versions else ''}")
    print(f"TensorBoard:  tensorboard --logdir {log_dir}   "
          f"(evaluation under {eval_report.SUMMARY_SUBDIR}/: scalars, AP per class, blessing; "
          f"PR curves per class in runs {eval_report.SUMMARY_SUBDIR}/<model>)")
    return 0
