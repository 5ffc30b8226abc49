"""`mbt preprocess`: the ClipExampleGen job outside TFX, on any Beam runner.

Same PTransform per split (SplitToTFRecords), same split rule and same output layout as the
ExampleGen: OUT/Split-<name>/data_tfrecord-*.gz and OUT/DeadLetters/. Runs on the
DirectRunner's FnApiRunner in this process with one worker thread per core by default
(`--workers N`, `--processes` for worker processes); `--beam-arg` passes any Beam pipeline
option through (e.g. --beam-arg=--runner=DataflowRunner --beam-arg=--project=...).
"""
import os
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from components.preprocess.clip_decoder import MAX_DAMAGED_FRACTION, MISSING_AUDIO_POLICIES
from components.preprocess.label_files import FORMATS, parse_label_file, write_class_map
from components.preprocess.splits import assign_splits
from components.preprocess.transform import (DEAD_LETTERS_DIR, RECORDS_FILE_NAME,
                                             SplitToTFRecords, read_outcome)
from pipeline.settings import LOCAL_RUNNER


def add_arguments(parser):
    parser.add_argument("--labels", required=True, help="label file (local or gs://)")
    parser.add_argument("--videos", required=True,
                        help="folder that relative video paths / YouTube ids resolve against")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", default="generic", choices=FORMATS)
    parser.add_argument("--class-map", help="class map CSV (AudioSet: class_labels_indices.csv)")
    parser.add_argument("--video-template", default="{ytid}.mp4",
                        help="AudioSet/VGGSound file name, with {ytid} {start} {end}")
    parser.add_argument("--presegmented", action="store_true",
                        help="AudioSet/VGGSound files hold only the labelled segment")
    parser.add_argument("--splits", default="train:3,eval:1",
                        help="output splits and hash buckets for rows without a split")
    parser.add_argument("--fps", type=float, default=25)
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--missing-audio", default="reject", choices=MISSING_AUDIO_POLICIES)
    parser.add_argument("--min-duration", type=float, default=1.0)
    parser.add_argument("--include-waveform", action="store_true")
    parser.add_argument("--max-damaged-fraction", type=float, default=MAX_DAMAGED_FRACTION,
                        help="share of a clip's packets that may fail to decode (skipped and "
                        "counted) before it is rejected as corrupt; at least one always may")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="DirectRunner workers, each decoding one clip at a time (default: "
                        "one per core; ignored by other runners)")
    parser.add_argument("--processes", action="store_true",
                        help="DirectRunner workers are processes (multi_processing) instead of "
                        "threads of this process")
    parser.add_argument("--decoder-threads", type=int, default=1,
                        help="FFmpeg threads per clip; 0: one per core (default 1: the "
                        "workers already decode clips in parallel)")
    parser.add_argument("--beam-arg", action="append", default=[],
                        help="Beam pipeline option passed through, repeatable")
    parser.add_argument("--quiet", action="store_true", help="no per-clip progress lines")


def beam_options(workers: int, beam_args, processes: bool = False) -> PipelineOptions:
    """Local options unless `beam_args` choose otherwise: the DirectRunner's FnApiRunner
    (settings.LOCAL_RUNNER) with worker threads (the decoder, JPEG encoder and GZIP release
    the GIL, and threads start at once), worker processes with `processes` (12-30 s of
    start-up here, docs/benchmarks.md)."""
    mode = "multi_processing" if processes else "multi_threading" if workers > 1 else "in_memory"
    defaults = [LOCAL_RUNNER, f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    given = {a.split("=")[0] for a in beam_args}
    return PipelineOptions([d for d in defaults if d.split("=")[0] not in given] + beam_args)


def preprocess(args) -> dict:
    """Runs the job; returns the summed counts (read, written, rejected, rejected_by_kind)."""
    records, class_map = parse_label_file(
        args.labels, args.videos, args.format, class_map_path=args.class_map,
        video_template=args.video_template, presegmented=args.presegmented)
    buckets = {name: int(n) for name, n in (s.split(":") for s in args.splits.split(","))}
    records = assign_splits(records, buckets)
    dead_dir = os.path.join(args.out, DEAD_LETTERS_DIR)
    options = dict(fps=args.fps, short_side=args.short_side, missing_audio=args.missing_audio,
                   min_duration=args.min_duration, decoder_threads=args.decoder_threads,
                   max_damaged_fraction=args.max_damaged_fraction)
    with beam.Pipeline(options=beam_options(args.workers, args.beam_arg,
                                            args.processes)) as pipeline:
        for split in buckets:
            _ = pipeline | f"Split[{split}]" >> SplitToTFRecords(
                [r for r in records if r.split == split], class_map, split,
                os.path.join(args.out, f"Split-{split}", RECORDS_FILE_NAME), dead_dir,
                include_waveform=args.include_waveform, progress=not args.quiet, **options)
    write_class_map(class_map, os.path.join(args.out, "class_map.csv"))
    return read_outcome(dead_dir)


def run(args) -> int:
    began = time.time()
    counts = preprocess(args)
    seconds = time.time() - began
    print(f"\nread {counts['read']} = written {counts['written']} + rejected "
          f"{counts['rejected']}  ({seconds:.1f} s, {counts['read'] / seconds:.2f} clips/s)")
    for kind, n in sorted(counts["rejected_by_kind"].items()):
        print(f"  rejected {kind}: {n}")
    if counts["rejected"]:
        print(f"dead letters (item, reason): {os.path.join(args.out, DEAD_LETTERS_DIR)}")
    if counts["read"] != counts["written"] + counts["rejected"]:
        print("ERROR: clips lost between read and written + rejected", file=sys.stderr)
        return 1
    return 0
