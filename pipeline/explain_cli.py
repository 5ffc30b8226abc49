"""`mbt explain VIDEO... --saved-model MODEL`: where the model attends (paper 4.4, Figure 6).

For each video, the model's window (centred unless --start, as `mbt predict` takes it) goes
through the exported model's own layers; Attention Rollout from what the classifier reads
is drawn on the middle frame (RGB patches, summed over the frames) and on the log-mel
(spectrogram patches), one PNG per video in --out (components/attention_maps.py).
MODEL is a SavedModel the pipeline exported: a pushed version, a serving model folder
(`<serving base>/<model name>`: its newest version), a Trainer's model artifact, or a
pipeline root (its newest Trainer model).
"""
import argparse
import os

from mbt_keras.user_error import UserError, existing_file, output_folder

SAVED_MODEL = "saved_model.pb"
TRAINER_EXPORT = "Format-Serving"  # where the TFX Trainer puts run_fn's export in its artifact


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="local video files")
    parser.add_argument("--saved-model", required=True,
                        help="exported model: a pushed version, <serving base>/<model name> "
                        "(its newest version), a Trainer's model artifact or a pipeline root")
    parser.add_argument("--out", default="attention_maps", help="folder for one PNG per video")
    parser.add_argument("--start", type=float, default=None, help="window start (default: centred)")


def saved_model_dir(path: str) -> str:
    """The SavedModel folder that `path` names (see the module docstring)."""
    from pipeline.report_cli import newest_output
    from serving.model_versions import numeric_versions
    versions = numeric_versions(path)
    trainer_model = newest_output(path, "Trainer", "model")
    for candidate in (path, os.path.join(path, TRAINER_EXPORT),
                      os.path.join(path, str(versions[-1])) if versions else None,
                      os.path.join(trainer_model, TRAINER_EXPORT) if trainer_model else None):
        if candidate and os.path.isfile(os.path.join(candidate, SAVED_MODEL)):
            return candidate
    raise UserError(f"--saved-model {path}: no exported model there (a pushed version, a "
                    "serving model folder, a Trainer's model artifact or a pipeline root)")


def run(args) -> int:
    for video in args.videos:
        existing_file(video, "VIDEO")
    output_folder(args.out, "--out")
    saved = saved_model_dir(args.saved_model)
    import tensorflow as tf

    from components import attention_maps
    from mbt_keras import attention_rollout, contract
    from mbt_keras.export import request_model_inputs
    from serving.client import read_window

    model, config, model_contract = attention_rollout.exported_attention_model(saved)
    os.makedirs(args.out, exist_ok=True)
    print(f"model: {saved}")
    for video in args.videos:
        window = read_window(video, num_frames=model_contract.num_frames,
                             seconds=model_contract.window_seconds, start=args.start)
        inputs = request_model_inputs(
            config, tf.constant(window.inputs[contract.IN_FRAMES_JPEG].tolist(), tf.string),
            tf.constant(window.inputs[contract.IN_WAVEFORM], tf.float32))
        [clip] = attention_maps.explain(model, config, {k: v.numpy() for k, v in inputs.items()})
        title = f"{os.path.basename(video)}: " + attention_maps.clip_title(
            clip, model_contract.class_names)
        path = os.path.join(args.out, os.path.splitext(os.path.basename(video))[0] + ".png")
        with open(path, "wb") as f:
            f.write(attention_maps.figure_png(config, clip, title))
        shares = ", ".join(f"{name} {share:.1%}" for name, share in clip.shares().items())
        print(f"{path}: {attention_maps.clip_title(clip, model_contract.class_names)}; "
              f"rollout mass: {shares}")
    return 0
