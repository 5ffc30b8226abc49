"""The paper-size path end to end: `mbt train` of mbt-b16 (ViT-B/16 encoders, 224 px, 8 frames,
8 s of log-mel) initialised from a ViT-B/16-shaped ImageNet-21k `.npz`, one epoch of 2 steps at
batch 2 whose length comes from the records' counts file, and its float32 export; then the
SavedModel is loaded and scores one clip. Against the same command on mbt-micro in the same
run (the fixed cost: start-up, tracing, writing), each in a process of its own.

Too heavy for `make test` on a shared CPU machine (about 12 GB at the peak), so it is a bench:
run it when the machine is otherwise idle.

    python bench/paper_size.py [--work-dir DIR] [--presets mbt-micro mbt-b16]

The .npz holds random arrays in the vision_transformer repository's layout and shapes (the
real checkpoint cannot be downloaded here); the records are 4 stamped clips
(tests/mbt_keras/tfrecord_fixtures.py) in `mbt preprocess`'s layout with its counts file.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

CLIPS, BATCH = 4, 2


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


def _inputs(work: str, config) -> tuple:
    """(ViT .npz at the config's width and depth, records glob), written under `work`."""
    import numpy as np

    from components.preprocess.transform import COUNTS_FILE, DEAD_LETTERS_DIR
    from tests.mbt_keras.test_checkpoints import random_arrays, vit_shapes
    from tests.mbt_keras.tfrecord_fixtures import write_clips
    npz = os.path.join(work, "vit.npz")
    np.savez(npz, **random_arrays(vit_shapes(hidden=config.hidden_size, heads=config.num_heads,
                                             mlp=config.mlp_dim, layers=config.num_layers)))
    split = os.path.join(work, "records", "Split-train")
    os.makedirs(split)
    side = max(config.image_size, 40)
    write_clips(os.path.join(split, "data_tfrecord-00000-of-00001"), CLIPS,
                sum(config.num_classes), seconds=-(-config.spec_frames // 100), fps=5.0,
                height=side, width=side + side // 8)
    os.makedirs(os.path.join(work, "records", DEAD_LETTERS_DIR))
    with open(os.path.join(work, "records", DEAD_LETTERS_DIR, COUNTS_FILE.format("train")),
              "w") as f:
        json.dump({"rows": CLIPS, "read": CLIPS, "written": CLIPS, "rejected": 0,
                   "rejected_by_kind": {}}, f)
    return npz, os.path.join(split, "*")


def child(preset: str, work: str) -> dict:
    """One preset's run in this process: seconds per phase, peak RSS, export size."""
    import numpy as np
    import tensorflow as tf

    from mbt_keras import contract
    from mbt_keras.config import from_preset
    from pipeline.cli import main
    config = from_preset(preset)
    npz, data = _inputs(work, config)
    model_dir, export_dir = os.path.join(work, "run"), os.path.join(work, "export")
    began = time.time()
    assert main(["train", "--data", data, "--preset", preset, "--init-checkpoint", npz,
                 "--epochs", "1", "--batch-size", str(BATCH), "--model-dir", model_dir,
                 "--export-dir", export_dir, "--quiet"]) == 0
    trained = time.time()
    serve = tf.saved_model.load(export_dir).signatures[contract.SIG_UINT8]
    frames = np.random.default_rng(0).integers(0, 256, (1, config.num_frames, 256, 288, 3),
                                               dtype=np.uint8)
    waveform = np.zeros((1, config.spec_frames * contract.HOP_SAMPLES), np.float32)
    scores = serve(frames_uint8=tf.constant(frames),
                   waveform=tf.constant(waveform))[contract.OUT_SCORES].numpy()
    assert scores.shape == (1, sum(config.num_classes)) and np.isfinite(scores).all()
    with open(os.path.join(model_dir, "config.json")) as f:
        history = json.load(f)["history"]
    return {"preset": preset, "train_and_export_s": trained - began,
            "load_and_score_s": time.time() - trained, "loss": history[0]["loss"],
            "export_mb": _folder_bytes(export_dir) / 2**20,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", default=None, help="scratch folder (default: a temp one)")
    parser.add_argument("--presets", nargs="+", default=["mbt-micro", "mbt-b16"],
                        help="the first is the baseline")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.work_dir)))
        return
    work = args.work_dir or tempfile.mkdtemp(prefix="paper_size_")
    rows = []
    for preset in args.presets:
        folder = os.path.join(work, preset)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", preset,
                               "--work-dir", folder], capture_output=True, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), check=False)
        if done.returncode:
            sys.exit(f"{preset} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print("| preset | mbt train: ViT init, 2 steps, export (s) | load + score a clip (s) "
          "| export (MB) | peak RSS (GB) | train+export vs baseline |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['preset']} | {row['train_and_export_s']:.0f} | "
              f"{row['load_and_score_s']:.1f} | {row['export_mb']:.0f} | {row['peak_gb']:.1f} | "
              f"{row['train_and_export_s'] / base['train_and_export_s']:.1f}x |")
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
