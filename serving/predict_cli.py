"""`mbt predict VIDEO`: top-k labels of a window of a local video, or with `--timeline` of
every window of it, from a server (gRPC `--server` or REST `--rest`) or a SavedModel.

The window (frames, seconds) is the model's own, read from its input contract
(`serving.model_contract`); flags that say otherwise get a warning, or an error where the
model would refuse them. `--rest` and `--help` import neither TensorFlow nor gRPC
(`bench/cli_startup.py` measures it).
"""
import argparse
import functools
import os
import sys

from mbt_keras import contract
from mbt_keras.user_error import (UserError, existing_file, existing_folder, in_range,
                                  writable_parent)


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("video", nargs="?", help="local video file (any format FFmpeg reads)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="HOST:PORT of a TF Serving-compatible gRPC server")
    where.add_argument("--rest", metavar="URL",
                       help="http://HOST:PORT of a TF Serving REST API (e.g. mbt serve "
                       "--rest-port 8501); this side needs no TensorFlow")
    where.add_argument("--saved-model", help="run the SavedModel directory in-process instead")
    parser.add_argument("--model", default="mbt", help="model name on the server")
    parser.add_argument("--signature", default=contract.SIG_SERVING)
    parser.add_argument("--contract", metavar="FILE",
                        help="read the model's input contract from FILE (a model's "
                        f"assets/{contract.CONTRACT_ASSET}, or its SavedModel directory) "
                        "instead of asking the model: the official server's REST API cannot "
                        "return it")
    parser.add_argument("--show-contract", action="store_true",
                        help="print the model's input contract (JSON) and exit")
    parser.add_argument("--start", type=float, default=None, help="window start (default: centred)")
    timeline = add_window_arguments(parser)
    timeline.add_argument("--out", help="write one row per window to FILE.csv or FILE.json")
    timeline.add_argument("--plot", help="draw the top classes over time to FILE.png")


def add_window_arguments(parser: argparse.ArgumentParser):
    """The window flags of `mbt predict` and `mbt infer` (--num-frames, --seconds, and
    --timeline, --hop, --batch-size); returns the timeline's argument group."""
    parser.add_argument("--num-frames", type=int, default=None,
                        help="frames sent per window (default: the model's; it resamples to "
                        "its own)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="window length (default: the model's window)")
    timeline = parser.add_argument_group("timeline: classify every window of the whole video")
    timeline.add_argument("--timeline", action="store_true",
                          help="consecutive windows over the whole video, one streaming "
                          "decoding pass, instead of the centred window")
    timeline.add_argument("--hop", type=float, default=None,
                          help="seconds between window starts (default: the window length)")
    timeline.add_argument("--batch-size", type=int, default=8,
                          help="windows per request or signature call")
    return timeline


def apply_contract(args, server):
    """Fill `args.contract`, `args.num_frames` and `args.seconds` from the model's contract
    (`model_contract.resolve_window`, printing why a flag that differs is a problem), read
    from --contract, the SavedModel or the `server` client (`_connect`); an exit status when
    the command ends here, else None."""
    from serving import model_contract
    if args.contract:
        load = functools.partial(model_contract.from_file, args.contract)
    elif args.saved_model:
        load = functools.partial(model_contract.from_saved_model, args.saved_model)
    elif args.rest:
        load = server.input_contract
    else:
        load = functools.partial(model_contract.from_server, server.stub, args.model)
    # --show-contract asks for the model's own window: it fails only without a contract.
    flags = (None, None) if args.show_contract else (args.num_frames, args.seconds)
    args.contract, num_frames, seconds, notes = model_contract.resolve_window(load, *flags)
    if args.show_contract:
        print(args.contract.to_json())
        return 0
    args.num_frames, args.seconds = num_frames, seconds
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return None


def _connect(args):
    """The --rest or --server client (None with --saved-model); gRPC (and the TensorFlow its
    protos import) is imported only for --server. Refusals and unreachable servers reach the
    entry point as they are (RestError is a UserError; grpc.RpcError is read there)."""
    if args.rest:
        from serving.rest_client import RestClient
        return RestClient(args.rest, args.model)
    if args.server:
        from serving.client import PredictClient
        return PredictClient(args.server, args.model)
    return None


def check_args(args) -> None:
    """Flags and local paths, checked before the model's contract is fetched from the server
    or the disk."""
    if not (args.video or args.show_contract):
        raise UserError("the video argument is required (except with --show-contract)")
    if args.video:
        from components.preprocess.clip_decoder import probe
        probe(existing_file(args.video, "video"))  # a ClipError for a file that is no video
    if args.saved_model:
        existing_folder(args.saved_model, "--saved-model")
        existing_file(os.path.join(args.saved_model, "saved_model.pb"), "--saved-model")
    if args.out and not args.out.endswith((".csv", ".json")):
        raise UserError(f"--out {args.out}: expected a .csv or .json file")
    if (args.out or args.plot or args.hop) and not args.timeline:
        raise UserError("--out, --plot and --hop need --timeline")
    for flag, path in (("--out", args.out), ("--plot", args.plot)):
        if path:
            writable_parent(path, flag)
    in_range(args.batch_size, "--batch-size", low=1)
    for flag, value, bounds in (("--start", args.start, dict(low=0)),
                                ("--hop", args.hop, dict(above=0))):
        if value is not None:
            in_range(value, flag, **bounds)


def run(args) -> int:
    check_args(args)
    try:
        server = _connect(args)
    except ValueError as exc:  # a URL or address that cannot name a server
        raise UserError(str(exc)) from None
    try:
        status = apply_contract(args, server)
        return _predict(args, server) if status is None else status
    finally:
        if server:
            server.close()


def _predict(args, server) -> int:
    from serving import client
    if args.saved_model:
        predict = client.load_saved_model(args.saved_model, args.signature)
        where = lambda: f"in-process {args.saved_model}"  # noqa: E731
    else:
        answered = {}

        def predict(inputs):
            outputs, answered["version"] = server.predict(inputs, args.signature)
            return outputs
        where = lambda: (f"{args.model} version {answered['version']} at "  # noqa: E731
                         f"{args.server or args.rest}")
    if args.timeline:
        return _timeline(args, predict, where)
    window = client.read_window(args.video, num_frames=args.num_frames,
                                seconds=args.seconds, start=args.start)
    outputs = predict(window.inputs)
    print(f"{args.video} ({where()})")
    if not window.has_audio:
        print(NO_AUDIO_NOTICE)
    print(client.format_top_k(outputs))
    return 0


NO_AUDIO_NOTICE = "note: the video has no audio track; the model heard silence"


def _timeline(args, predict, where) -> int:
    from serving import timeline
    windows = timeline.windows(args.video, num_frames=args.num_frames, seconds=args.seconds,
                               hop=args.hop)
    rows = list(timeline.classify(windows, predict, args.batch_size))
    print(f"{args.video} ({where()}): timeline of {args.seconds:g} s windows every "
          f"{args.hop or args.seconds:g} s")
    if rows and not rows[0].has_audio:
        print(NO_AUDIO_NOTICE)
    print(timeline.summary(rows))
    # Without a contract (a model exported before it), names are learnt from the top-k.
    names = timeline.class_names(rows, args.contract and list(args.contract.class_names))
    if args.out:
        if args.out.endswith(".csv"):
            timeline.write_csv(rows, args.out)
        else:
            timeline.write_json(rows, names, args.out, args.video)
        print(f"wrote {len(rows)} rows to {args.out}")
    if args.plot:
        timeline.plot(rows, names, args.plot)
        print(f"wrote {args.plot}")
    return 0
