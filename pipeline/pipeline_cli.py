"""`mbt pipeline run | compile | submit`: the TFX pipeline from the command line.

Every PipelineSettings field a user changes is a flag; nothing needs a code edit.
"""
import argparse
import json

from mbt_keras.config import from_preset, parse_assignments
from mbt_keras.user_error import (UserError, existing_file, in_range,
                                  writable_parent)
from pipeline.preprocess_cli import (add_data_arguments, check_data_args, check_data_files,
                                     format_splits, parse_splits)
from pipeline.settings import PipelineSettings, TrainerMachine, with_class_count

_DEFAULTS = PipelineSettings()
# The data flags (mbt preprocess's, add_data_arguments), each a PipelineSettings field.
DATA_DESTS = ("labels", "videos", "encoding", "label_format", "class_map", "noun_class_map",
              "video_template", "presegmented", "splits", "fps", "short_side", "missing_audio",
              "min_duration", "segment_seconds", "include_waveform", "max_damaged_fraction",
              "compression", "decoder_threads")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by run and compile, one per PipelineSettings field a user changes."""
    d = _DEFAULTS
    defaults = {dest: getattr(d, dest) for dest in DATA_DESTS}
    defaults["splits"] = format_splits(d.splits)
    add_data_arguments(parser, defaults, helps={"fps": (
        "frame rate the records store (default: the lowest that holds the preset's frame "
        "sampling: 5 for mbt-b16's 8 frames over 8 s, the paper's 25 where the stride needs it; "
        "docs/host_sizing.md)")})
    # The old name, kept working but hidden: one flag name for one thing across sub-commands.
    parser.add_argument("--data", dest="videos", default=d.videos, help=argparse.SUPPRESS)
    parser.add_argument("--preset", default=d.preset)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a model config field (repeatable)")
    parser.add_argument("--train-set", dest="train_overrides", action="append", default=[],
                        metavar="FIELD=VALUE",
                        help="override a training field, e.g. mixup_alpha=0.5 (repeatable)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--learning-rate", type=float, default=d.learning_rate)
    parser.add_argument("--tpu", default=d.tpu, help="TPU name/address for TPUStrategy")
    parser.add_argument("--pretrained", default=d.pretrained,
                        help="ViT .npz to initialise from (for compile a gs:// URI, as "
                        "--videos, --labels and --class-map: a cloud run reads no local path)")
    parser.add_argument("--min-metric", type=float, default=d.min_metric,
                        help="absolute lower bound on mAP (multi-label) or top-1")
    parser.add_argument("--max-metric-drop", type=float, default=d.max_metric_drop,
                        help="allowed drop against the latest blessed model")
    parser.add_argument("--pr-curve-classes", type=int, default=d.pr_curve_classes,
                        help="Evaluator PR curves for class ids 0..N-1 only (0: none; every "
                        "class when the head has at most N; default "
                        "components.eval_config.PR_CURVE_CLASSES); each curve costs the "
                        "Evaluator ~60 us CPU per eval example")
    parser.add_argument("--pipeline-name", default=d.pipeline_name)
    parser.add_argument("--pipeline-root", default=d.pipeline_root)
    parser.add_argument("--metadata-path", default=d.metadata_path)
    parser.add_argument("--serving-base", default=d.serving_base)
    parser.add_argument("--model-name", default=d.model_name)
    parser.add_argument("--beam-arg", dest="beam_args", action="append", default=None,
                        help="Beam pipeline option for all components (repeatable)")
    parser.add_argument("--no-cache", dest="enable_cache", action="store_false")
    parser.add_argument("--image", default=d.image,
                        help="pipeline image (kubeflow/Dockerfile): the Dataflow workers of "
                        "every Beam step and, on Kubeflow/Vertex, every step and the Trainer's "
                        "custom job run it")


def settings_from_args(args) -> PipelineSettings:
    fields = {k: getattr(args, k) for k in DATA_DESTS + (
        "preset", "epochs", "batch_size", "learning_rate",
        "tpu", "pretrained", "min_metric", "max_metric_drop", "pr_curve_classes",
        "pipeline_name", "pipeline_root", "metadata_path", "serving_base", "model_name",
        "enable_cache", "image")}
    fields["splits"] = parse_splits(args.splits)
    fields["overrides"] = parse_assignments(args.overrides)
    fields["train_overrides"] = parse_assignments(args.train_overrides)
    if args.beam_args:
        fields["beam_args"] = tuple(args.beam_args)
        fields["decode_beam_args"] = tuple(args.beam_args)
    return PipelineSettings(**fields)


def check_settings(settings: PipelineSettings, local: bool) -> PipelineSettings:
    """What the user gave, checked before TFX starts a run or compiles one: flag values,
    and for a `local` run the input files (the class maps and the label file's head, as the
    ExampleGen's launcher checks them: its workers read the rows). Each mistake is a
    UserError naming the flag and the value. Returns the settings, for a `local` run
    `counted` (the class map read once)."""
    from components.trainer_module import train_config_of
    # The head the Trainer builds takes its class counts from the class map, which a compile
    # may not read here (gs://): `run` counts them after the other checks.
    from_preset(settings.preset, **({} if "num_classes" not in settings.overrides
                                    and settings.class_map else settings.overrides))
    train_config_of(settings.trainer_config())  # what the Trainer will build from it
    check_data_args(settings, local=False)
    for flag, value, bounds in (
            ("--min-metric", settings.min_metric, dict(low=0, high=1)),
            ("--max-metric-drop", settings.max_metric_drop, dict(low=0, high=1)),
            ("--pr-curve-classes", settings.pr_curve_classes, dict(low=0))):
        if value is not None:
            in_range(value, flag, **bounds)
    if not local:
        return settings
    check_data_files(settings)
    settings = counted(settings)
    model_config = from_preset(settings.preset, **settings.overrides)
    if settings.pretrained:
        from mbt_keras.checkpoints import vit_npz
        vit_npz.check_npz(existing_file(settings.pretrained, "--pretrained"), model_config)
    return settings


def check_spec(path: str) -> None:
    """A compiled PipelineJob spec (`mbt pipeline compile --out`), checked before any cloud
    call."""
    existing_file(path, "spec")
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"spec {path} is not a compiled pipeline spec (JSON): {error}") from None
    if not isinstance(spec, dict) or "pipelineSpec" not in spec:
        raise UserError(f"spec {path} is JSON but not a compiled PipelineJob (no pipelineSpec); "
                        "write one with `mbt pipeline compile --out`")


def counted(settings: PipelineSettings) -> PipelineSettings:
    """The settings run and compile both build their pipeline from: with the class map's class
    count, which sizes the head the Trainer trains and the classes the Evaluator's metrics
    cover (with_class_count). Compile reads it too, else its spec would evaluate the preset's
    classes while its Trainer trains the class map's."""
    from components.preprocess.label_files import LabelFileError
    try:
        return with_class_count(settings)
    except LabelFileError as error:
        raise UserError(
            f"--class-map: {error}; the model head and the Evaluator's metrics take its class "
            "count: where only the cloud can read it (gs:// needs Google Cloud credentials), "
            "give the count with --set num_classes=N") from None


def trainer_machine_from_args(args):
    """The Trainer's Vertex machine, or None when no --trainer-* flag asks for one."""
    if not (args.trainer_machine_type or args.trainer_accelerator_type
            or args.trainer_accelerator_count or args.trainer_tpu_topology):
        return None
    chosen = dict(accelerator_type=args.trainer_accelerator_type,
                  accelerator_count=args.trainer_accelerator_count,
                  tpu_topology=args.trainer_tpu_topology)
    if args.trainer_machine_type:
        chosen["machine_type"] = args.trainer_machine_type
    return TrainerMachine(**chosen)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    add_settings_arguments(sub.add_parser("run", help="run locally with LocalDagRunner"))
    comp = sub.add_parser("compile", help="compile a KFP v2 PipelineJob spec")
    add_settings_arguments(comp)
    comp.add_argument("--target", choices=["vertex", "kubeflow"], default="vertex")
    comp.add_argument("--out", required=True, help="output JSON file")
    comp.add_argument("--bucket", required=True, help="gs:// bucket for pipeline root and serving")
    comp.add_argument("--project", default=None, help="GCP project (enables Dataflow for Beam)")
    comp.add_argument("--region", default="us-central1")
    comp.add_argument("--trainer-machine-type", default=None,
                      help="run the Trainer as a Vertex AI custom job on this machine type "
                      "(e.g. n1-standard-16, a2-highgpu-2g, ct5lp-hightpu-4t)")
    comp.add_argument("--trainer-accelerator-type", default=None,
                      help="Vertex accelerator: a GPU (NVIDIA_TESLA_V100, NVIDIA_L4, ...) or a "
                      "TPU (TPU_V5_LITEPOD, TPU_V3, ...); TPUs train with TPUStrategy")
    comp.add_argument("--trainer-accelerator-count", type=int, default=0,
                      help="accelerators on the Trainer's machine (several GPUs: "
                      "MirroredStrategy)")
    comp.add_argument("--trainer-tpu-topology", default=None,
                      help="TPU slice topology where the machine type needs one (e.g. 2x2)")
    sub_ = sub.add_parser("submit", help="submit a compiled spec to Vertex AI Pipelines")
    sub_.add_argument("spec", help="compiled PipelineJob JSON")
    sub_.add_argument("--project", required=True)
    sub_.add_argument("--region", required=True)
    sub_.add_argument("--bucket", required=True, help="gs:// staging bucket / pipeline root")
    sub_.add_argument("--service-account", default=None)
    sub_.add_argument("--job-id", default=None)


def run(args) -> int:
    if args.action == "run":
        settings = check_settings(settings_from_args(args), local=True)
        from pipeline.local_runner import run_local
        run_local(settings)
        return 0
    if args.action == "compile":
        settings = settings_from_args(args)
        check_settings(settings, local=False)
        writable_parent(args.out, "--out")
        in_range(args.trainer_accelerator_count, "--trainer-accelerator-count", low=0)
        from kubeflow import compile as kfp_compile
        settings = counted(kfp_compile.cloud_settings(
            settings, target=args.target, bucket=args.bucket,
            project=args.project, region=args.region,
            image=args.image or kfp_compile.DEFAULT_IMAGE,
            trainer_machine=trainer_machine_from_args(args)))
        path = kfp_compile.compile_pipeline(settings, args.out, image=settings.image)
        print(f"compiled {args.target} pipeline spec: {path}")
        return 0
    if not args.bucket.startswith("gs://"):
        raise UserError(f"--bucket {args.bucket!r}: expected a gs:// URI")
    check_spec(args.spec)
    from kubeflow.submit import submit
    job = submit(args.spec, project=args.project, region=args.region, bucket=args.bucket,
                 service_account=args.service_account, job_id=args.job_id)
    print(f"submitted: {job.resource_name}")
    return 0
