"""`mbt report RUN_DIR`: one screen on a pipeline run: metrics, blessing, push, logs.

RUN_DIR is the pipeline root (`<root>/<component>/<output>/<execution id>/`); the newest
execution of each component is reported. The class map (names and groups) and where the
Pusher pushed come from the run's own ML Metadata (pipeline/run_record.py), so the command
works as printed from any directory; flags only override them. The evaluation is also
written to TensorBoard next to the Trainer's logs (components/eval_report.py; step = the
Evaluator's execution id), with the attention maps of a few evaluation clips per class
(components/attention_maps.py), so the command can be re-run on any finished run.
"""
import argparse
import os

from mbt_keras.user_error import UserError, existing_file, existing_folder, in_range
from pipeline.settings import PipelineSettings

REPORTED = ("Trainer", "Evaluator", "Pusher")
ATTENTION_CLIPS = 2


def add_arguments(parser: argparse.ArgumentParser):
    defaults = PipelineSettings()
    parser.add_argument("run_dir", help="pipeline root of the run")
    parser.add_argument("--metadata-path", default=None,
                        help="the run's ML Metadata store (default: where the local runner "
                        "puts it beside RUN_DIR)")
    parser.add_argument("--serving-base", default=None,
                        help="where the Pusher pushes (<base>/<model-name>/<version>; "
                        "default: the run's push destination)")
    parser.add_argument("--model-name", default=None,
                        help=f"(default: the run's; {defaults.model_name} with --serving-base)")
    parser.add_argument("--class-map", default=None,
                        help="CSV of index,name[,group] (names and groups for AP per class; "
                        "default: the class map the run's ExampleGen read)")
    parser.add_argument("--noun-class-map", default=None,
                        help="Epic-Kitchens' noun classes, with --class-map its verb classes "
                        "(default: the run's)")
    parser.add_argument("--attention-clips", type=int, default=ATTENTION_CLIPS,
                        help="evaluation clips per class whose attention maps go to "
                        "TensorBoard (0: none)")


def newest_output(run_dir: str, component: str, output: str):
    """`<run_dir>/<component>/<output>/<newest execution id>`, or None."""
    parent = os.path.join(run_dir, component, output)
    ids = [int(n) for n in os.listdir(parent) if n.isdigit()] if os.path.isdir(parent) else []
    return os.path.join(parent, str(max(ids))) if ids else None


def class_names_and_groups(path, encoding: str = "utf-8", noun_path=None):
    """([class names by index], {name: group}) from a class map file, with `noun_path` the
    verbs' then the nouns' (`verb:<name>`, `noun:<name>`, the model's output order); nothing
    without one."""
    if not path or not os.path.isfile(path):
        return [], {}
    from components.preprocess.label_files import class_names, read_class_groups, read_class_maps
    return (class_names(read_class_maps(path, noun_path, encoding)),
            {} if noun_path else read_class_groups(path, encoding))


def push_dir(args, record) -> str:
    """<serving base>/<model name>: the flags where given, else where the run pushed."""
    if args.serving_base:
        return os.path.join(args.serving_base, args.model_name or PipelineSettings().model_name)
    if record.push_dir:
        return os.path.join(os.path.dirname(record.push_dir), args.model_name) \
            if args.model_name else record.push_dir
    defaults = PipelineSettings()
    return os.path.join(defaults.serving_base, args.model_name or defaults.model_name)


def write_attention_maps(run_dir: str, log_dir: str, class_names, per_class: int,
                         step: int) -> int:
    """The candidate's attention maps on `per_class` eval clips of each class, to
    TensorBoard beside the evaluation; returns the number of clips drawn."""
    model = newest_output(run_dir, "Trainer", "model")
    examples = newest_output(run_dir, "ClipExampleGen", "examples")
    if not per_class or model is None or examples is None:
        return 0
    from components import attention_maps
    from pipeline.explain_cli import saved_model_dir
    return attention_maps.write_summaries(saved_model_dir(model),
                                          os.path.join(examples, "Split-eval", "*"), log_dir,
                                          class_names, per_class, step)


def run(args) -> int:
    existing_folder(args.run_dir, "RUN_DIR")
    if not any(os.path.isdir(os.path.join(args.run_dir, c)) for c in REPORTED):
        raise UserError(f"RUN_DIR {args.run_dir} holds no {', '.join(REPORTED)} outputs: pass "
                        "the pipeline root of a run (--pipeline-root of `mbt pipeline run`)")
    if args.metadata_path:
        existing_file(args.metadata_path, "--metadata-path")
    in_range(args.attention_clips, "--attention-clips", low=0)
    from components import eval_report
    from pipeline import run_record
    from serving.model_versions import numeric_versions

    record = run_record.read(args.run_dir, args.metadata_path)
    evaluation = newest_output(args.run_dir, "Evaluator", "evaluation")
    model_run = newest_output(args.run_dir, "Trainer", "model_run")
    print(f"run:          {os.path.abspath(args.run_dir)}")
    print("ML Metadata:  " + (record.metadata_path or (
        f"none at {run_record.default_metadata_path(args.run_dir)}: pass --metadata-path, "
        "or --class-map and --serving-base")))
    if evaluation is None:
        print("evaluation:   none yet (the Evaluator has not run)")
        return 1
    log_dir = model_run or evaluation
    class_map = args.class_map or record.class_map
    nouns = args.noun_class_map or (None if args.class_map else record.noun_class_map)
    names, groups = class_names_and_groups(class_map, record.encoding, nouns)
    source = "--class-map" if args.class_map else "the run's"
    print((f"class map:    {class_map} ({source})" + (f", nouns {nouns}" if nouns else ""))
          if class_map else "class map:    none (classes by index)")
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
        print(f"this run:     {'pushed' if os.listdir(pushed_model) else 'not pushed'} by the Pusher"
              f"{' (newest push: ' + record.pushed + ')' if record.pushed else ''}")
    model_dir = push_dir(args, record)
    versions = numeric_versions(model_dir)  # the versions a server would load (gs:// too)
    print(f"serving:      {os.path.join(model_dir, str(versions[-1]))} (serving version "
          f"{versions[-1]})" if versions else f"serving:      nothing in {model_dir}")
    attention = write_attention_maps(args.run_dir, log_dir, names, args.attention_clips,
                                     step=int(os.path.basename(evaluation)))
    print(f"TensorBoard:  tensorboard --logdir {log_dir}   "
          f"(evaluation under {eval_report.SUMMARY_SUBDIR}/: scalars, AP per class, blessing"
          f"{', attention maps of ' + str(attention) + ' eval clips' if attention else ''}; "
          f"PR curves per class in runs {eval_report.SUMMARY_SUBDIR}/<model>)")
    return 0
