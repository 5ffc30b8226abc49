"""`mbt infer`: batch inference of a folder or a listing of videos with a SavedModel, on any
Beam runner (components/batch_inference.py).

Output: OUT/predictions-SSSSS-of-NNNNN.jsonl (one JSON line per classified window) and
OUT/DeadLetters/ (dead letters and counts, as `mbt preprocess` writes them). The runner,
output and progress options are `mbt preprocess`'s (`add_job_arguments`, `beam_options`,
`run_job`), so `--beam-arg=--runner=DataflowRunner ...` runs it on Dataflow.
"""
import functools
import os
from typing import List

import apache_beam as beam

from components.batch_inference import (WritePredictions, Window, check_saved_model,
                                        list_videos, probe)
from components.preprocess.clip_decoder import MISSING_AUDIO_POLICIES
from components.preprocess.label_files import parse_listing
from components.preprocess.transform import DEAD_LETTERS_DIR, read_outcome
from mbt_keras import contract
from pipeline.output_folder import replaced_output
from pipeline.preprocess_cli import add_job_arguments, beam_options, run_job
from pipeline.settings import absolute


def add_arguments(parser):
    videos = parser.add_mutually_exclusive_group(required=True)
    videos.add_argument("--videos", help="folder of videos, searched recursively (local or "
                        "gs://); files with other extensions are skipped unless --all-files")
    videos.add_argument("--listing", help="text file with one video path or URI per line "
                        "(relative paths resolve against its folder; '#' lines skipped)")
    parser.add_argument("--model", required=True,
                        help="SavedModel directory (local or gs://), e.g. a pushed version")
    parser.add_argument("--num-frames", type=int, default=None,
                        help="frames sent per window (default: as mbt predict)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="window length (default: as mbt predict)")
    parser.add_argument("--missing-audio", default="silence", choices=MISSING_AUDIO_POLICIES,
                        help="videos without audio: predicted on silence and marked "
                        "has_audio=false (default), or rejected")
    parser.add_argument("--all-files", action="store_true",
                        help="with --videos, take every file, whatever its extension")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of --listing")
    add_job_arguments(parser)


def centre_window(source, **window) -> List[Window]:
    """The window `mbt predict` classifies by default: the model's window centred in the clip
    (serving.client.clip_inputs, so predictions equal `mbt predict`'s). `start`/`end` are
    reported from the container's declared duration. This is the one function that decides
    which windows of a video are classified."""
    from serving.client import clip_inputs  # pylint: disable=import-outside-toplevel
    inputs = clip_inputs(source, **window)
    seconds = inputs[contract.IN_WAVEFORM].shape[1] / contract.SAMPLE_RATE
    duration, has_audio = probe(source)
    start = max(0.0, (duration - seconds) / 2) if duration else 0.0
    return [Window(start, start + seconds, has_audio, inputs)]


def infer(args) -> dict:
    """Runs the job; returns read_outcome's counts (`written`: videos predicted). Local
    paths are made absolute, as `mbt preprocess` does: the predictions name their videos."""
    try:
        pipeline_options = beam_options(args.workers, args.beam_arg, args.processes, args.image)
    except ValueError as error:
        raise SystemExit(f"mbt infer: {error}") from error
    args.model, args.out = absolute(args.model), absolute(args.out)
    args.listing, args.videos = absolute(args.listing), absolute(args.videos)
    check_saved_model(args.model)
    if args.listing:
        records = parse_listing(args.listing, args.encoding)
        print(f"listed {len(records)} videos in {args.listing}")
    else:
        records, skipped = list_videos(args.videos, args.all_files)
        others = ", ".join(f"{ext} {n}" for ext, n in sorted(skipped.items()))
        print(f"listed {len(records)} videos under {args.videos}"
              + (f"; skipped {sum(skipped.values())} other files ({others}; --all-files "
                 "takes them too)" if skipped else ""))
    window = {k: v for k, v in (("num_frames", args.num_frames), ("seconds", args.seconds))
              if v is not None}
    with replaced_output(args.out, args.overwrite) as out:
        with beam.Pipeline(options=pipeline_options) as pipeline:
            _ = pipeline | "Infer" >> WritePredictions(
                records, args.model, out, functools.partial(centre_window, **window),
                missing_audio=args.missing_audio, progress=not args.quiet)
        return read_outcome(os.path.join(out, DEAD_LETTERS_DIR))


def run(args) -> int:
    return run_job(infer, args, done="predicted")

