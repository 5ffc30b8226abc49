"""`mbt preprocess`: the ClipExampleGen job outside TFX, on any Beam runner.

The ExampleGen's job (LabelFileToTFRecords: the label file read by the workers, same split
rule) and its output layout: OUT/Split-<name>/data_tfrecord-* (`.gz` with --compression gzip) and
OUT/DeadLetters/. Runs on the
DirectRunner's FnApiRunner in this process with one worker thread per core by default
(`--workers N`, `--processes` for worker processes); `--beam-arg` passes any Beam pipeline
option through (e.g. --beam-arg=--runner=DataflowRunner --beam-arg=--project=...). The job
writes into a temporary folder beside --out that replaces it whole at the end
(pipeline/output_folder.py); a non-empty --out is refused unless --overwrite.

`add_job_arguments`, `job_options` and `run_job` are the options and summary every
accounted Beam job of the `mbt` command shares (`mbt infer` too).
"""
import argparse
import os
import sys
import time
from typing import Optional

from components.preprocess.clip_decoder import MAX_DAMAGED_FRACTION, MISSING_AUDIO_POLICIES
from components.preprocess.label_files import FORMATS
from components.preprocess.segments import DEFAULT_SEGMENT_SECONDS
from components.preprocess.splits import DEFAULT_SPLITS
from mbt_keras import contract
from mbt_keras.user_error import UserError, existing_file, existing_folder, in_range
from pipeline.settings import LOCAL_RUNNER, absolute, with_worker_image


def add_arguments(parser):
    add_data_arguments(parser)
    # The old name, kept working but hidden: one flag name for one choice across sub-commands.
    parser.add_argument("--format", dest="label_format", default="generic", choices=FORMATS,
                        help=argparse.SUPPRESS)
    add_job_arguments(parser)


def add_data_arguments(parser, defaults: Optional[dict] = None,
                       helps: Optional[dict] = None):
    """The data flags, what is read and how it becomes records, of `mbt preprocess` and of
    `mbt pipeline run`/`compile` alike: one name and one meaning on both
    (tests/pipeline/test_flag_names.py). `defaults` ({dest: value}) replaces a flag's
    default (the pipeline's PipelineSettings), `helps` ({dest: text}) its help where that
    default means something else; --labels and --videos without a default are required."""
    defaults, helps = defaults or {}, helps or {}

    def add(flag, **options):
        dest = flag[2:].replace("-", "_")
        if dest in defaults:
            options.update(default=defaults[dest], required=False)
        if dest in helps:
            options["help"] = helps[dest]
        parser.add_argument(flag, **options)

    add("--labels", required=True, help="label file (local or gs://)")
    add("--videos", required=True,
        help="folder (or gs:// prefix) that relative video paths / YouTube ids resolve against")
    add("--encoding", default="utf-8",
        help="text encoding of the label file and class map (default utf-8)")
    add("--label-format", default="generic", choices=FORMATS, help="label file format")
    add("--class-map", help="class map CSV (AudioSet: class_labels_indices.csv; Epic-Kitchens: "
        "EPIC_100_verb_classes.csv)")
    add("--noun-class-map", help="Epic-Kitchens: EPIC_100_noun_classes.csv (--class-map holds "
        "the verbs); a verb+noun model's classes are the verbs, then the nouns")
    add("--video-template", default=None,
        help="video file of a row, relative to --videos: AudioSet/VGGSound {ytid} {start} {end} "
        "(default {ytid}.mp4), Epic-Kitchens {participant_id} {video_id} {narration_id} {start} "
        "{end} (default {participant_id}/videos/{video_id}.MP4)")
    add("--presegmented", action="store_true",
        help="AudioSet/VGGSound/Epic-Kitchens files hold only the labelled segment")
    add("--splits", default=format_splits(DEFAULT_SPLITS),
        help="output splits and hash buckets for rows without a split (default %(default)s)")
    add("--fps", type=float, default=25,
        help="frame rate to store (default the paper's 25; 5 holds mbt-b16's 8 frames over 8 s "
        "in a fifth of the bytes, docs/host_sizing.md)")
    add("--short-side", type=int, default=256,
        help="shorter side of the stored frames (>= the model's image size)")
    add("--missing-audio", default="reject", choices=MISSING_AUDIO_POLICIES)
    add("--min-duration", type=float, default=1.0,
        help="seconds of video a clip needs, else it is a too_short dead letter")
    add("--segment-seconds", type=float, default=DEFAULT_SEGMENT_SECONDS,
        help="rows longer than this are cut into consecutive records of it, each with the row's "
        "labels and an id <clip_id>@<start ms>-<end ms> (bounded memory and record size, "
        "docs/data_format.md); 0 keeps rows whole, up to 512 MiB of frames a record")
    add("--include-waveform", action="store_true")
    add("--max-damaged-fraction", type=float, default=MAX_DAMAGED_FRACTION,
        help="share of a clip's packets that may fail to decode (skipped and counted) before it "
        "is rejected as corrupt; at least one always may")
    add("--compression", default="none", choices=contract.RECORD_COMPRESSIONS,
        help="record files: none (DMVR/Scenic read them as they are; GZIP saves ~1%% on JPEG "
        "frames) or gzip (.gz)")
    add("--decoder-threads", type=int, default=1,
        help="FFmpeg threads per clip; 0: one per core (default 1: the workers already decode "
        "clips in parallel)")


def add_job_arguments(parser):
    """Output, runner and progress options of every accounted Beam job (`mbt preprocess`,
    `mbt infer`)."""
    parser.add_argument("--out", required=True, help="output folder (local or gs://)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty --out whole (default: refuse)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="DirectRunner workers, each decoding one clip at a time (default: "
                        "one per core; ignored by other runners)")
    parser.add_argument("--processes", action="store_true",
                        help="DirectRunner workers are processes (multi_processing) instead of "
                        "threads of this process")
    parser.add_argument("--beam-arg", action="append", default=[],
                        help="Beam pipeline option passed through, repeatable")
    parser.add_argument("--quiet", action="store_true", help="no per-item progress lines")
    parser.add_argument("--image", default=None,
                        help="the pipeline image (kubeflow/Dockerfile): with "
                        "--beam-arg=--runner=DataflowRunner, the Dataflow worker image")


def beam_options(workers: int, beam_args, processes: bool = False, image: str = None):
    """Local options unless `beam_args` choose otherwise: the DirectRunner's FnApiRunner
    (settings.LOCAL_RUNNER) with worker threads (the decoder, JPEG encoder and igzip release
    the GIL, and threads start at once), worker processes with `processes` (12-30 s of
    start-up here, docs/benchmarks.md). On Dataflow the workers run `image`
    (settings.with_worker_image)."""
    mode = "multi_processing" if processes else "multi_threading" if workers > 1 else "in_memory"
    defaults = [LOCAL_RUNNER, f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    from apache_beam.options.pipeline_options import PipelineOptions
    given = {a.split("=")[0] for a in beam_args}
    return PipelineOptions(list(with_worker_image(
        [d for d in defaults if d.split("=")[0] not in given] + list(beam_args), image)))


def job_options(args):
    """beam_options from add_job_arguments' flags; options Beam or the Dataflow defaults
    refuse (e.g. Dataflow without an image) are a UserError."""
    in_range(args.workers, "--workers", low=1)
    try:
        return beam_options(args.workers, args.beam_arg, args.processes, args.image)
    except ValueError as error:
        raise UserError(str(error)) from error


def format_splits(buckets: dict) -> str:
    """{'train': 3, 'eval': 1} -> 'train:3,eval:1', what --splits reads."""
    return ",".join(f"{name}:{n}" for name, n in buckets.items())


def parse_splits(text: str) -> dict:
    """`--splits train:3,eval:1` -> {'train': 3, 'eval': 1}."""
    try:
        buckets = {name: int(n) for name, n in (s.split(":") for s in text.split(","))}
    except ValueError:
        buckets = {}
    if not buckets or min(buckets.values()) < 1 or "" in buckets:
        raise UserError(f"--splits {text!r}: expected NAME:BUCKETS pairs with BUCKETS >= 1, "
                        "e.g. train:3,eval:1")
    return buckets


def check_data_args(args, local: bool = True) -> None:
    """The data flags (add_data_arguments), checked before a job starts; with `local`, the
    input files too (label_files.check_source). `args` may be a PipelineSettings (its fields
    are the flags' dests)."""
    for flag, bounds in (("--fps", dict(above=0)), ("--short-side", dict(low=1)),
                         ("--min-duration", dict(low=0)), ("--segment-seconds", dict(low=0)),
                         ("--max-damaged-fraction", dict(low=0, high=1)),
                         ("--decoder-threads", dict(low=0))):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            in_range(value, flag, **bounds)
    if local:
        check_data_files(args)


def check_data_files(args) -> None:
    """The input files the data flags name: they exist, and the label file and class maps
    pass label_files.check_source (its head and the maps, not its rows)."""
    existing_file(args.labels, "--labels")
    existing_folder(args.videos, "--videos")
    for flag in ("--class-map", "--noun-class-map"):
        if getattr(args, flag[2:].replace("-", "_")):
            existing_file(getattr(args, flag[2:].replace("-", "_")), flag)
    from components.preprocess.label_files import check_source
    check_source(label_source(args))


def label_source(args):
    """The label_files.LabelSource the data flags name (`args` as for check_data_args)."""
    from components.preprocess.label_files import LabelSource
    return LabelSource(args.labels, args.videos, args.label_format, args.class_map,
                       args.video_template, args.presegmented, args.encoding,
                       args.noun_class_map)


def preprocess(args) -> dict:
    """Runs the job; returns the summed counts (read, written, rejected, rejected_by_kind).
    Local paths are made absolute: the records name their source files."""
    pipeline_options = job_options(args)
    check_data_args(args)
    buckets = parse_splits(args.splits)
    import apache_beam as beam  # Beam and TensorFlow load here, not for --help

    from components.preprocess.label_files import source_class_map, write_class_map
    from components.preprocess.transform import (CLASS_MAP_FILE, DEAD_LETTERS_DIR,
                                                 RECORDS_FILE_NAME, SPLIT_FOLDER,
                                                 LabelFileToTFRecords, read_outcome)
    from pipeline.output_folder import replaced_output
    args.labels, args.videos, args.out = (absolute(p) for p in (args.labels, args.videos,
                                                                args.out))
    source = label_source(args)
    class_map = source_class_map(source)
    options = dict(fps=args.fps, short_side=args.short_side, missing_audio=args.missing_audio,
                   min_duration=args.min_duration, decoder_threads=args.decoder_threads,
                   max_damaged_fraction=args.max_damaged_fraction)
    with replaced_output(args.out, args.overwrite) as out:
        dead_dir = os.path.join(out, DEAD_LETTERS_DIR)
        with beam.Pipeline(options=pipeline_options) as pipeline:
            _ = pipeline | "LabelFile" >> LabelFileToTFRecords(
                source, class_map, buckets,
                lambda split: os.path.join(out, SPLIT_FOLDER.format(split), RECORDS_FILE_NAME),
                dead_dir,
                include_waveform=args.include_waveform, compression=args.compression,
                segment_seconds=args.segment_seconds, progress=not args.quiet, **options)
        write_class_map(class_map, os.path.join(out, CLASS_MAP_FILE))
        return read_outcome(dead_dir)


def run_job(job, args, done: str = "written") -> int:
    """Runs `job(args) -> counts` (read_outcome's dict) and prints the summary line
    `read N = <done> D + rejected R` with the rejections per kind. Unusable input (a label
    file that does not decode, a missing folder or model, a non-empty --out) raises a
    UserError (the `mbt` entry point shows it); counts that do not add up are exit status 1."""
    began = time.time()
    counts = job(args)
    seconds = time.time() - began
    print(f"\nread {counts['read']} = {done} {counts['written']} + rejected "
          f"{counts['rejected']}  ({seconds:.1f} s, {counts['read'] / seconds:.2f} items/s)")
    if counts.get("rows", counts["read"]) != counts["read"]:
        print(f"  ({counts['rows']} label-file rows: rows longer than --segment-seconds were cut "
              "into segments, one item each)")
    for kind, n in sorted(counts["rejected_by_kind"].items()):
        print(f"  rejected {kind}: {n}")
    if counts["rejected"]:
        from components.preprocess.transform import DEAD_LETTERS_DIR
        print(f"dead letters (item, reason): {os.path.join(args.out, DEAD_LETTERS_DIR)}")
    if counts["read"] != counts["written"] + counts["rejected"]:
        print(f"ERROR: items lost between read and {done} + rejected", file=sys.stderr)
        return 1
    return 0


def run(args) -> int:
    return run_job(preprocess, args)
