"""`mbt demo` (what `make demo` runs): demo data -> TFX pipeline -> server -> `mbt predict`.

Each step is the same code a user runs by hand; the demo only chains them and says where
the results are. A second run reuses the data and TFX's cache for unchanged components.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from typing import Dict, List, Sequence

from mbt_keras.user_error import UserError, in_range, output_folder
from pipeline.settings import PipelineSettings, with_class_count

DEMO_CLIPS = 144
DEMO_STEPS, DEMO_EPOCHS = 900, 10   # training steps, in epochs of DEMO_STEPS // DEMO_EPOCHS
# What a demo folder was made by (the demo's data and recipe, and the stack), written into it
# on start and checked on the next: TFX's cache and ML Metadata of another stack, or clips of
# an older data format, must not be reused beside this run's. Raise FORMAT when the demo data
# change (a changed recipe only reruns the Trainer and what follows, through TFX's cache).
STAMP = "demo_stamp.json"
FORMAT = 2
SOLVED_AP = 0.9  # a group is solved when every class in it reaches this eval AP


class DemoFolderError(UserError):
    """The --out folder was made by another demo format or stack; the message is one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="folder for data, artifacts and models")
    parser.add_argument("--clips", type=int, default=DEMO_CLIPS)
    parser.add_argument("--preset", default="mbt-tiny")
    parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS,
                        help=f"epochs of {DEMO_STEPS // DEMO_EPOCHS} steps")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed (initial weights, data order); the clips stay the same")
    parser.add_argument("--overwrite", action="store_true",
                        help="rebuild an --out made by another demo format or stack from scratch")


def stamp() -> dict:
    """The demo format and the stack (Python, TFX, TensorFlow) this process runs."""
    return {"format": FORMAT, "python": "%d.%d" % sys.version_info[:2],
            "tfx": metadata.version("tfx"), "tensorflow": metadata.version("tensorflow")}


def _described(made: dict) -> str:
    return (f"demo format {made.get('format')} on Python {made.get('python')}, "
            f"TFX {made.get('tfx')}, TensorFlow {made.get('tensorflow')}")


def prepare_out(out: str, overwrite: bool) -> None:
    """Makes `out` this demo's folder: kept when this format and stack made it, emptied when
    `overwrite`, else DemoFolderError. Runs before any work, so a refusal costs nothing."""
    current = stamp()
    entries = os.listdir(out) if os.path.isdir(out) else []
    if entries:
        try:
            with open(os.path.join(out, STAMP), encoding="utf-8") as f:
                made = json.load(f)
        except (OSError, ValueError):
            made = None
        if made != current and not overwrite:
            by = (_described(made) if isinstance(made, dict)
                  else f"an older demo (no readable {STAMP})")
            raise DemoFolderError(
                f"--out {out} was made by {by}, this is {_described(current)}; reusing it "
                f"would mix the two: pass --overwrite to rebuild it, or choose another --out")
        if made != current:
            shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, STAMP), "w", encoding="utf-8") as f:
        json.dump(current, f)


def demo_settings(out: str, preset: str, epochs: int, seed: int = 0) -> PipelineSettings:
    """The demo's run: where it writes, and its recipe, which departs from the paper's (4.2)
    where a 3-minute CPU run on 112 training clips needs it (README "Why the demo trains differently")."""
    data = os.path.join(out, "data")
    return with_class_count(PipelineSettings(
        pipeline_name="mbt-demo",
        pipeline_root=os.path.join(out, "pipeline_root"),
        metadata_path=os.path.join(out, "metadata.sqlite"),
        videos=data, labels=os.path.join(data, "labels.csv"),
        class_map=os.path.join(data, "class_map.csv"),
        short_side=80,  # mbt-tiny crops 64x64; smaller JPEGs keep the demo fast
        # One label per clip: a softmax over the six classes (the paper's AudioSet head is
        # multi-label sigmoids), which solved the relation classes where sigmoids did not.
        # Bottlenecks from the first layer (Lf=0, the paper's early bottleneck fusion): from
        # mbt-tiny's Lf=2 the relation classes were solved on 1 of 5 seeds, from 0 on 4.
        preset=preset, overrides={"head": "singlelabel", "fusion_layer": 0},
        # AdamW at 0.008 (batch 64; 0.001 at batch 8) for 900 steps: the paper's SGD at 0.5
        # fitted the unimodal classes but left the relation ones at chance (docs/results.md).
        # Long epochs (the Trainer evaluates and checkpoints after each); the warm-up is
        # the paper's 2.5 epochs of 9 steps.
        epochs=epochs, steps_per_epoch=DEMO_STEPS // DEMO_EPOCHS, warmup_epochs=0.25,
        batch_size=8, learning_rate=0.008,
        # The demo's visual cue is the disc's colour, which the paper's hue jitter would erase.
        train_overrides={"optimizer": "adamw", "augment": False, "seed": seed},
        serving_base=os.path.join(out, "serving"), model_name="mbt"))


def verdict_lines(per_class_ap: Dict[int, float], class_names: Sequence[str],
                  groups: Dict[str, str]) -> List[str]:
    """One line per class group of the class map (in class order): its classes' eval AP and
    whether the model solved it, so the user sees what fusion bought."""
    from pipeline.demo_data import GROUPS
    members = {}
    for index, name in enumerate(class_names):
        if name in groups:
            members.setdefault(groups[name], []).append((name, per_class_ap.get(index, math.nan)))
    lines = []
    for group, classes in members.items():
        aps = [ap for _, ap in classes]
        solved = all(ap >= SOLVED_AP for ap in aps)  # NaN (no eval example) is not solved
        note = GROUPS[group][1] if group in GROUPS else ""
        outcome = (f"solved{': ' + note if note else ''}" if solved
                   else f"not solved (every class needs AP >= {SOLVED_AP})")
        lines.append(f"{group} ({', '.join(name for name, _ in classes)}): AP "
                     f"{' / '.join(f'{ap:.2f}' for ap in aps)} - {outcome}")
    return lines


def verdict_lines_of(settings: PipelineSettings) -> List[str]:
    """`verdict_lines` of the run's newest evaluation; none without one or without groups."""
    from components import eval_report
    from pipeline.report_cli import class_names_and_groups, newest_output
    evaluation = newest_output(settings.pipeline_root, "Evaluator", "evaluation")
    names, groups = class_names_and_groups(settings.class_map)
    if evaluation is None or not groups:
        return []
    return verdict_lines(eval_report.load_eval_summary(evaluation).per_class_ap, names, groups)


def _print_verdict(lines: List[str]) -> None:
    if lines:
        _step("what fusion bought: eval AP per class group")
        print("\n".join(lines))


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
    prepare_out(args.out, args.overwrite)
    data = os.path.join(args.out, "data")
    if not os.path.exists(os.path.join(data, "labels.csv")):
        _step(f"making {args.clips} demo clips in {data}")
        from pipeline.demo_data import make_demo_data
        make_demo_data(data, clips=args.clips, seed=0)
    settings = demo_settings(args.out, args.preset, args.epochs, args.seed)

    _step("running the TFX pipeline (LocalDagRunner, SQLite MLMD, Beam DirectRunner)")
    from pipeline.local_runner import run_local
    run_local(settings)
    # The command as printed at the end: the report reads the class map and the push
    # destination from the run's ML Metadata.
    _step(f"mbt report {settings.pipeline_root}  (also writes the evaluation and attention "
          "maps to TensorBoard)")
    from pipeline.cli import main as mbt
    mbt(["report", settings.pipeline_root])
    verdict = verdict_lines_of(settings)

    from serving.model_versions import numeric_versions
    versions = numeric_versions(settings.push_dir)
    if not versions:
        print(f"\nThe Evaluator did not bless the model, so nothing was pushed to "
              f"{settings.push_dir}; see `mbt report {settings.pipeline_root}`.")
        _print_verdict(verdict)
        return 1

    # The demo draws each clip's container, so clips are named from its label file.
    from components.preprocess.label_files import parse_label_file
    clips, _ = parse_label_file(settings.labels, data)
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
        for clip in [c for c in clips if c.split == "eval"][:len(CLASSES)]:
            video = clip.uri
            _step(f"mbt predict {video} --server {target}   (true label: {','.join(clip.labels)})")
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
    print(f"query it:       mbt predict {clips[0].uri} --server {target}")
    print(f"where it looks: mbt explain {clips[0].uri} --saved-model {settings.push_dir}")
    print(f"run summary:    mbt report {settings.pipeline_root}")
    _print_verdict(verdict)
    return 0
