"""`mbt summary` and `mbt flops`: parameter counts and graph-counted GFLOPs of a preset."""
import os
import re

from mbt_keras.config import from_preset, parse_assignments
from mbt_keras.user_error import UserError, output_folder, writable_parent

FLOPS_FUSIONS = ("bottleneck", "cross")
PLOT_FORMATS = (".png", ".pdf", ".svg")


def _add_model_arguments(parser):
    parser.add_argument("--preset", default="mbt-b16", help="preset name (mbt_keras.config.PRESETS)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a ModelConfig field; JSON values, e.g. --set fusion_layer=4")


def config_from_args(args):
    """The preset's config with `--set field=value` overrides (values parsed as JSON if they can be)."""
    return from_preset(args.preset, **parse_assignments(args.overrides))


def parameter_breakdown(model) -> dict:
    """Parameter counts by part, from the top-level layer names (see model.py).

    A modality's `encoder` is its transformer blocks plus the shared final LayerNorm, i.e.
    what a ViT encoder holds; with vanilla fusion the fused blocks are shared and counted
    under rgb.
    """
    parts = {"rgb_tokeniser": 0, "rgb_encoder": 0, "spec_tokeniser": 0, "spec_encoder": 0,
             "fusion": 0, "head": 0}
    for weight in model.weights:
        layer = weight.path.split("/")[0]
        size = int(weight.numpy().size)
        if layer == "encoder_norm":
            parts["rgb_encoder"] += size
            parts["spec_encoder"] += size
            continue
        if re.fullmatch(r"encoderblock_\d+_spectrogram", layer):
            part = "spec_encoder"
        elif re.fullmatch(r"encoderblock_\d+", layer):
            part = "rgb_encoder"
        elif layer in ("embedding", "cls_rgb", "posembed_input"):
            part = "rgb_tokeniser"
        elif layer in ("embedding_spectrogram", "cls_spec", "posembed_input_spectrogram"):
            part = "spec_tokeniser"
        elif layer == "bottleneck":
            part = "fusion"
        else:
            part = "head"
        parts[part] += size
    parts["total"] = model.count_params()
    return parts


def add_summary_arguments(parser):
    _add_model_arguments(parser)


def run_summary(args) -> int:
    from mbt_keras.model import build_model
    config = config_from_args(args)
    model = build_model(config)
    model.summary(line_length=110)
    print(f"\nParameters of {args.preset} (fusion={config.fusion}, Lf={config.fusion_layer}):")
    for part, count in parameter_breakdown(model).items():
        print(f"  {part:<16}{count:>15,}")
    print("  (each *_encoder = its transformer blocks + the shared encoder_norm)")
    return 0


def add_flops_arguments(parser):
    _add_model_arguments(parser)
    parser.add_argument("--logdir", help="also write the table as a TensorBoard text summary here")
    parser.add_argument("--plot", help="also save a PNG plot of GFLOPs against Lf here")


def flops_table(config, fusions=FLOPS_FUSIONS) -> dict:
    """{fusion: {Lf: GFLOPs}} at Lf = 0, 2, 4, ..., L (Lf = L is late fusion)."""
    from mbt_keras.flops import flops_by_fusion_layer
    layers = sorted(set(range(0, config.num_layers + 1, 2)) | {config.num_layers})
    return {f: {lf: v / 1e9 for lf, v in flops_by_fusion_layer(config.replace(fusion=f), layers).items()}
            for f in fusions}


def format_flops_table(table, num_layers) -> str:
    fusions = list(table)
    late = table[fusions[0]][num_layers]
    lines = ["| Lf | " + " | ".join(f"{f} GFLOPs" for f in fusions) + " |",
             "|---:|" + "---:|" * len(fusions)]
    for lf in table[fusions[0]]:
        label = f"{lf} (late)" if lf == num_layers else str(lf)
        cells = [f"{table[f][lf]:.2f} ({100 * (table[f][lf] / late - 1):+.2f}%)" for f in fusions]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(f"\nLate fusion (Lf = L = {num_layers}): {late:.2f} GFLOPs; "
                 "percentages are relative to it. Batch 1, multiply-add = 2 FLOPs.")
    return "\n".join(lines)


def run_flops(args) -> int:
    config = config_from_args(args)
    # The outputs are checked before the graphs are counted (a minute for mbt-b16).
    if args.logdir:
        output_folder(args.logdir, "--logdir")
    if args.plot:
        if os.path.splitext(args.plot)[1].lower() not in PLOT_FORMATS:
            raise UserError(f"--plot {args.plot}: expected an image file name ending in "
                            f"{', '.join(PLOT_FORMATS)}")
        writable_parent(args.plot, "--plot")
    table = flops_table(config)
    text = format_flops_table(table, config.num_layers)
    print(f"GFLOPs of {args.preset} counted from the TF graph:\n{text}")
    if args.logdir:
        import tensorflow as tf
        with tf.summary.create_file_writer(args.logdir).as_default():
            tf.summary.text(f"flops/{args.preset}", text, step=0)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for fusion, values in table.items():
            ax.plot(list(values), list(values.values()), marker="o", label=fusion)
        ax.set(xlabel="fusion layer Lf", ylabel="GFLOPs", title=f"{args.preset}, batch 1")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot)
    return 0
