"""`mbt predict VIDEO`: top-k labels of a local video from a server or a SavedModel.

The window (frames, seconds) is the model's own, read from its input contract
(`serving.model_contract`); flags that say otherwise get a warning, or an error where the
model would refuse them.
"""
import argparse
import sys

from mbt_keras import contract


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("video", nargs="?", help="local video file (any format FFmpeg reads)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="HOST:PORT of a TF Serving-compatible gRPC server")
    where.add_argument("--saved-model", help="run the SavedModel directory in-process instead")
    parser.add_argument("--model", default="mbt", help="model name on the server")
    parser.add_argument("--signature", default=contract.SIG_SERVING)
    parser.add_argument("--num-frames", type=int, default=None,
                        help="frames sent (default: the model's; it resamples to its own)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="window length (default: the model's window)")
    parser.add_argument("--show-contract", action="store_true",
                        help="print the model's input contract (JSON) and exit")
    parser.add_argument("--start", type=float, default=None, help="window start (default: centred)")


def apply_contract(args):
    """Fill `args.num_frames` / `args.seconds` from the model's contract (printing why a
    flag that differs is a problem); an exit status when the command ends here, else None."""
    import grpc

    from serving import model_contract
    if not (args.video or args.show_contract):
        print("error: the video argument is required (except with --show-contract)",
              file=sys.stderr)
        return 2
    try:
        if args.saved_model:
            model = model_contract.from_saved_model(args.saved_model)
        else:
            from tensorflow_serving.apis import prediction_service_pb2_grpc
            with grpc.insecure_channel(args.server) as channel:
                model = model_contract.from_server(
                    prediction_service_pb2_grpc.PredictionServiceStub(channel), args.model)
    except model_contract.ContractMissing as exc:
        if args.show_contract or args.num_frames is None or args.seconds is None:
            print(f"error: {exc}; pass --num-frames and --seconds", file=sys.stderr)
            return 1
        return None
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if args.show_contract:
        print(model.to_json())
        return 0
    try:
        args.num_frames, args.seconds, notes = model_contract.window_for(
            model, args.num_frames, args.seconds)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return None


def run(args) -> int:
    status = apply_contract(args)
    if status is not None:
        return status
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
