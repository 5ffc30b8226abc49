"""`mbt predict VIDEO`: top-k labels of a local video from a server or a SavedModel."""
import argparse
import sys

from mbt_keras import contract


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("video", help="local video file (any format FFmpeg reads)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="HOST:PORT of a TF Serving-compatible gRPC server")
    where.add_argument("--saved-model", help="run the SavedModel directory in-process instead")
    parser.add_argument("--model", default="mbt", help="model name on the server")
    parser.add_argument("--signature", default=contract.SIG_SERVING)
    parser.add_argument("--num-frames", type=int, default=8, help="frames sent (model resamples)")
    parser.add_argument("--seconds", type=float, default=8.0, help="window length (paper: t = 8 s)")
    parser.add_argument("--start", type=float, default=None, help="window start (default: centred)")


def run(args) -> int:
    from components.preprocess.clip_decoder import ClipError
    from serving import client
    try:
        inputs = client.clip_inputs(args.video, num_frames=args.num_frames, seconds=args.seconds,
                                    start=args.start)
    except ClipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.saved_model:
        outputs = client.predict_saved_model(args.saved_model, inputs, args.signature)
        print(f"{args.video} (in-process {args.saved_model})")
    else:
        import grpc
        predictor = client.PredictClient(args.server, args.model)
        try:
            outputs, version = predictor.predict(inputs, args.signature)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        finally:
            predictor.close()
        print(f"{args.video} ({args.model} version {version} at {args.server})")
    print(client.format_top_k(outputs))
    return 0
