"""`mbt infer`: batch inference of a folder or a listing of videos with a SavedModel, on any
Beam runner (components/batch_inference.py).

Output: OUT/predictions-SSSSS-of-NNNNN.jsonl (one JSON line per classified window) and
OUT/DeadLetters/ (dead letters and counts, as `mbt preprocess` writes them). The runner,
output and progress options are `mbt preprocess`'s (`add_job_arguments`, `job_options`,
`run_job`), so `--beam-arg=--runner=DataflowRunner ...` runs it on Dataflow. The window is
the model's own (its input contract), as for `mbt predict`; `--timeline` classifies every
window of each video, as `mbt predict --timeline` does.
"""
import functools
import os
import sys

from components.preprocess.clip_decoder import MISSING_AUDIO_POLICIES
from mbt_keras.user_error import UserError, existing_file, existing_folder, in_range
from pipeline.preprocess_cli import add_job_arguments, job_options, run_job
from pipeline.settings import absolute
from serving.predict_cli import add_window_arguments


def add_arguments(parser):
    videos = parser.add_mutually_exclusive_group(required=True)
    videos.add_argument("--videos", help="folder of videos, searched recursively (local or "
                        "gs://); files with other extensions are skipped unless --all-files")
    videos.add_argument("--listing", help="text file with one video path or URI per line "
                        "(relative paths resolve against its folder; '#' lines skipped)")
    parser.add_argument("--model", required=True,
                        help="SavedModel directory (local or gs://), e.g. a pushed version")
    add_window_arguments(parser)  # as mbt predict's
    parser.add_argument("--missing-audio", default="silence", choices=MISSING_AUDIO_POLICIES,
                        help="videos without audio: predicted on silence and marked "
                        "has_audio=false (default), or rejected")
    parser.add_argument("--all-files", action="store_true",
                        help="with --videos, take every file, whatever its extension")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of --listing")
    add_job_arguments(parser)


def centre_window(source, **window) -> list:
    """The window `mbt predict` classifies by default: the model's window centred in the clip
    (serving.client.read_window, so predictions equal `mbt predict`'s)."""
    from serving.client import read_window  # pylint: disable=import-outside-toplevel
    return [read_window(source, **window)]


def every_window(source, hop=None, **window):
    """Every window of the video, as `mbt predict --timeline` takes them (serving.timeline)."""
    from serving import timeline  # pylint: disable=import-outside-toplevel
    return timeline.windows(source, hop=hop, **window)


def saved_model_classifier(saved_model: str):
    """`classify(windows, batch_size) -> rows` with the SavedModel's serving signature,
    loaded here (once per worker process): serving.timeline.classify, so rows are the ones
    `mbt predict --saved-model` computes (components.batch_inference.ClassifierFn)."""
    from serving import client, timeline  # pylint: disable=import-outside-toplevel
    predict = client.load_saved_model(saved_model)
    return lambda windows, batch_size: timeline.classify(windows, predict, batch_size)


def model_window(args) -> dict:
    """{'num_frames', 'seconds'} of the model's input contract, with the flags applied as
    `mbt predict` applies them (`model_contract.resolve_window`: a warning for a flag that
    differs, ValueError for one the model would refuse, ContractMissing without a contract
    and without both flags)."""
    from serving import model_contract  # pylint: disable=import-outside-toplevel
    _, num_frames, seconds, notes = model_contract.resolve_window(
        functools.partial(model_contract.from_saved_model, args.model),
        args.num_frames, args.seconds)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return {"num_frames": num_frames, "seconds": seconds}


def infer(args) -> dict:
    """Runs the job; returns read_outcome's counts (`written`: videos predicted). Local
    paths are made absolute, as `mbt preprocess` does: the predictions name their videos."""
    if args.hop is not None and not args.timeline:
        raise UserError(f"--hop {args.hop:g} needs --timeline")
    in_range(args.batch_size, "--batch-size", low=1)
    if args.hop is not None:
        in_range(args.hop, "--hop", above=0)
    if args.listing:
        existing_file(args.listing, "--listing")
    else:
        existing_folder(args.videos, "--videos")
    pipeline_options = job_options(args)
    args.model, args.out = absolute(args.model), absolute(args.out)
    args.listing, args.videos = absolute(args.listing), absolute(args.videos)
    import apache_beam as beam  # Beam and TensorFlow load here, not for --help
    import tensorflow as tf

    from components.batch_inference import (WritePredictions, check_saved_model, folder_rows,
                                            skipped_counts)
    from components.preprocess.label_files import check_text, listing_rows
    from components.preprocess.read_labels import ReadRows
    from components.preprocess.transform import DEAD_LETTERS_DIR, read_outcome
    from pipeline.output_folder import replaced_output
    check_saved_model(args.model)
    if not args.listing and not tf.io.gfile.isdir(args.videos):  # a URI: a worker lists it
        raise UserError(f"--videos {args.videos}: no such folder")
    window = model_window(args)
    windows = (functools.partial(every_window, hop=args.hop, **window) if args.timeline
               else functools.partial(centre_window, **window))
    # The workers read the listing or list the folder (a bucket of millions of videos).
    if args.listing:
        check_text(args.listing, args.encoding)
        read = ReadRows(listing_rows, args.listing, args.encoding)
    else:
        read = ReadRows(folder_rows, args.videos, args.all_files)
    with replaced_output(args.out, args.overwrite) as out:
        pipeline = beam.Pipeline(options=pipeline_options)
        _ = pipeline | "Infer" >> WritePredictions(
            read, args.model, out, windows, saved_model_classifier,
            missing_audio=args.missing_audio,
            progress=not args.quiet, batch_size=args.batch_size)
        result = pipeline.run()
        result.wait_until_finish()
        counts = read_outcome(os.path.join(out, DEAD_LETTERS_DIR))
    if not args.listing:
        skipped = skipped_counts(result)
        others = ", ".join(f"{ext} {n}" for ext, n in sorted(skipped.items()))
        print(f"listed {counts['read']} videos under {args.videos}"
              + (f"; skipped {sum(skipped.values())} other files ({others}; --all-files "
                 "takes them too)" if skipped else ""))
    return counts


def run(args) -> int:
    return run_job(infer, args, done="predicted")

