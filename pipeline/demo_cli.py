"""`mbt demo` (what `make demo` runs): demo data -> TFX pipeline -> server -> `mbt predict`.

Each step is the same code a user runs by hand; the demo only chains them and says where
the results are. A second run reuses the data and TFX's cache for unchanged components.
"""
import argparse
import os
import subprocess
import sys
import time

from mbt_keras.user_error import in_range, output_folder
from pipeline.settings import PipelineSettings, with_class_count

DEMO_CLIPS = 96


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="folder for data, artifacts and models")
    parser.add_argument("--clips", type=int, default=DEMO_CLIPS)
    parser.add_argument("--preset", default="mbt-tiny")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--port", type=int, default=8500)


def demo_settings(out: str, preset: str, epochs: int) -> PipelineSettings:
    data = os.path.join(out, "data")
    return with_class_count(PipelineSettings(
        pipeline_name="mbt-demo",
        pipeline_root=os.path.join(out, "pipeline_root"),
        metadata_path=os.path.join(out, "metadata.sqlite"),
        videos=data, labels=os.path.join(data, "labels.csv"),
        class_map=os.path.join(data, "class_map.csv"),
        short_side=80,  # mbt-tiny crops 64x64; smaller JPEGs keep the demo fast
        # The paper's base LR (0.5 at batch 64): twice it ended 4 seeded runs on the demo's
        # records at val mAP 0.39-0.89, 0.5 at 0.84-0.90 (docs/benchmarks.md).
        preset=preset, epochs=epochs, batch_size=8, learning_rate=0.5,
        # The demo's visual cue is the disc's colour, which the paper's hue jitter would erase.
        train_overrides={"augment": False},
        serving_base=os.path.join(out, "serving"), model_name="mbt"))


def _step(message: str) -> None:
    print(f"\n== {message}", flush=True)


def _wait_until_serving(target: str, model_name: str, server: subprocess.Popen,
                        timeout_s: float = 180.0) -> None:
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(target))
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited with code {server.returncode}")
        try:
            if stub.GetModelStatus(request, timeout=5).model_version_status:
                return
        except grpc.RpcError:
            pass
        time.sleep(1)
    raise TimeoutError(f"no model served at {target} after {timeout_s:.0f} s")


def check_args(args) -> None:
    """The flags, and that the server's port is free, checked before the demo's minutes of
    work."""
    from mbt_keras.config import from_preset
    from pipeline.demo_data import CLASSES, EVAL_EVERY
    from serving.server_cli import check_port_free
    output_folder(args.out, "--out")
    from_preset(args.preset)
    # Every class needs an eval clip: EVAL_EVERY clips of each.
    in_range(args.clips, "--clips", low=len(CLASSES) * EVAL_EVERY)
    in_range(args.epochs, "--epochs", low=1)
    in_range(args.port, "--port", low=1, high=65535)
    check_port_free("127.0.0.1", args.port)


def run(args) -> int:
    check_args(args)
    began = time.time()
    settings = None
    data = os.path.join(args.out, "data")
    if not os.path.exists(os.path.join(data, "labels.csv")):
        _step(f"making {args.clips} demo clips in {data}")
        from pipeline.demo_data import make_demo_data
        make_demo_data(data, clips=args.clips, seed=0)
    settings = demo_settings(args.out, args.preset, args.epochs)

    _step("running the TFX pipeline (LocalDagRunner, SQLite MLMD, Beam DirectRunner)")
    from pipeline.local_runner import run_local
    run_local(settings)
    _step(f"mbt report {settings.pipeline_root}  (also writes the evaluation to TensorBoard)")
    from pipeline.cli import main as mbt
    mbt(["report", settings.pipeline_root, "--serving-base", settings.serving_base,
         "--model-name", settings.model_name, "--class-map", settings.class_map])

    from serving.model_versions import numeric_versions
    versions = numeric_versions(settings.push_dir)
    if not versions:
        print(f"\nThe Evaluator did not bless the model, so nothing was pushed to "
              f"{settings.push_dir}; see `mbt report {settings.pipeline_root}`.")
        return 1

    target = f"127.0.0.1:{args.port}"
    _step(f"serving {settings.push_dir} (version {versions[-1]}) on {target}")
    server = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--model-base",
                               settings.serving_base, "--model-name", settings.model_name,
                               "--port", str(args.port)])
    try:
        _wait_until_serving(target, settings.model_name, server)
        from pipeline.demo_data import CLASSES
        from serving import model_contract
        from serving.client import PredictClient, clip_inputs, format_top_k
        with open(settings.labels, encoding="utf-8") as f:
            eval_rows = [line.split(",") for line in f.read().splitlines()[1:]]
        for clip_id, path, label, split in [r for r in eval_rows if r[3] == "eval"][:len(CLASSES)]:
            video = os.path.join(data, path)
            _step(f"mbt predict {video} --server {target}   (true label: {label})")
            client = PredictClient(target, settings.model_name)
            window = model_contract.from_server(client.stub, settings.model_name)
            outputs, version = client.predict(clip_inputs(
                video, num_frames=window.num_frames, seconds=window.window_seconds))
            client.close()
            print(format_top_k(outputs))
    finally:
        server.terminate()
        server.wait(timeout=30)

    _step(f"done in {time.time() - began:.0f} s")
    print(f"artifacts:      {settings.pipeline_root}")
    print(f"ML Metadata:    {settings.metadata_path}")
    print(f"TensorBoard:    tensorboard --logdir {settings.pipeline_root}")
    print(f"pushed model:   {settings.push_dir}/{versions[-1]}")
    print(f"serve it:       mbt serve --model-base {settings.serving_base} --port {args.port}")
    print(f"query it:       mbt predict {os.path.join(data, 'videos', 'clip_0000.mp4')} "
          f"--server {target}")
    print(f"run summary:    mbt report {settings.pipeline_root}")
    return 0
