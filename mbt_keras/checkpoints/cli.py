"""`mbt init-from-vit` and `mbt import-scenic`: pretrained weights to a `.keras` model."""
import argparse

from mbt_keras.checkpoints import vit_npz
from mbt_keras.config import FUSIONS, LATE, PRESETS, from_preset
from mbt_keras.user_error import UserError, existing_file, in_range, writable_parent

FUSION_CHOICES = tuple(FUSIONS) + (LATE,)
INPUT_FLAGS = {"--num-frames": "num_frames", "--image-size": "image_size",
               "--spec-frames": "spec_frames", "--mel-bins": "mel_bins"}


def add_init_from_vit_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("npz", help="ViT checkpoint, e.g. ViT-B_16.npz (ImageNet-21k)")
    parser.add_argument("--preset", default="mbt-b16", choices=sorted(PRESETS))
    parser.add_argument("--num-classes", help="override the preset's classes, e.g. 527 or 97,300")
    parser.add_argument("--kernel-init", default="central", choices=vit_npz.KERNEL_INITS,
                        help="how the 2D patch kernel becomes a tubelet kernel")
    parser.add_argument("--out", required=True, help="the .keras file to write")


def check_out(path: str) -> None:
    """The `.keras` file to write, checked before any weights are read."""
    if not path.endswith(".keras"):
        raise UserError(f"--out {path}: expected a file name ending in .keras")
    writable_parent(path, "--out")


def run_init_from_vit(args) -> int:
    from mbt_keras.model import build_model
    overrides = {"num_classes": args.num_classes} if args.num_classes else {}
    config = from_preset(args.preset, **overrides)
    check_out(args.out)
    vit_npz.check_npz(existing_file(args.npz, "npz"), config)
    model = build_model(config)
    for line in vit_npz.init_from_vit(model, config, args.npz, kernel_init=args.kernel_init):
        print(line)
    model.save(args.out)
    print(f"wrote {args.out}")
    return 0


def add_import_scenic_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("checkpoint", help="Scenic checkpoint file or directory, e.g. "
                                           "mbtb32_as-500k_rgb-spec")
    parser.add_argument("--out", required=True, help="the .keras file to write")
    parser.add_argument("--class-labels", help="AudioSet class_labels_indices.csv for class names")
    parser.add_argument("--saved-model", help="also export the serving SavedModel to this "
                                              "directory (e.g. models/mbt/1)")
    parser.add_argument("--fusion", choices=FUSION_CHOICES, default=None,
                        help="override the fusion read from the checkpoint (a 'bottleneck' array: "
                             "bottleneck; separate per-modality blocks: cross, Scenic's "
                             "non-bottleneck mode; 'late': fusion layer = number of layers)")
    parser.add_argument("--fusion-layer", type=int, default=None,
                        help="Lf of the checkpoint, not stored in its weights (default: the "
                             "preset's 8, as the released models)")
    for flag, field in INPUT_FLAGS.items():
        parser.add_argument(flag, type=int, default=None, dest=field,
                            help=f"{field} the checkpoint was trained with, when its position "
                                 "embeddings leave it open (see the import report)")


def run_import_scenic(args) -> int:
    from mbt_keras.checkpoints import scenic_import  # TensorFlow: only when it runs
    overrides = {field: getattr(args, field) for field in ("fusion", "fusion_layer", *INPUT_FLAGS.values())
                 if getattr(args, field) is not None}
    import tensorflow as tf
    if not tf.io.gfile.exists(args.checkpoint):  # local, or a Scenic workdir on gs://
        raise UserError(f"checkpoint {args.checkpoint}: no such file or folder")
    for flag, field in {"--fusion-layer": "fusion_layer", **INPUT_FLAGS}.items():
        if field in overrides:
            in_range(overrides[field], flag, low=0 if field == "fusion_layer" else 1)
    check_out(args.out)
    if args.class_labels:
        existing_file(args.class_labels, "--class-labels")
    if args.saved_model:
        writable_parent(args.saved_model, "--saved-model")
    model, config, report = scenic_import.import_scenic(args.checkpoint, **overrides)
    for line in report:
        print(line)
    names = (scenic_import.read_class_names(args.class_labels, sum(config.num_classes))
             if args.class_labels else None)
    scenic_import.save_imported(model, config, args.out, names, args.saved_model)
    print(f"wrote {args.out}" + (f" and SavedModel {args.saved_model}" if args.saved_model else ""))
    return 0
