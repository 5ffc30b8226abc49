"""Import the authors' released Scenic MBT checkpoints (MBT-B/16x2, AudioSet) into Keras.

The model is the `mbt-b16x2-scenic` preset with the architecture read off the
checkpoint's shapes (modalities, width, depth, heads, classes, bottlenecks, patch sizes,
input sizes, fusion mode), so the released models and what Scenic's MBT trainer writes
with other settings import. The import is
strict: every checkpoint array sets exactly one model weight and every model weight is
set, or it fails naming the leftovers.
"""
import csv
import io
import math
import re

import tensorflow as tf

from mbt_keras.checkpoints import flax_msgpack
from mbt_keras.checkpoints.scenic_names import assign, model_weights, shape_text, vit_block_names
from mbt_keras.config import LATE, ModelConfig, from_preset
from mbt_keras.export import export_saved_model
from mbt_keras.model import build_model
from mbt_keras.user_error import UserError

PRESET = "mbt-b16x2-scenic"
# `fusion` value for late fusion: Scenic's fusion_layer == num_layers, any fusion mode.
_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)(_spectrogram)?/")
_POSITIONS = {"rgb": "Transformer/posembed_input/pos_embedding",
              "spec": "Transformer/posembed_input_spectrogram/pos_embedding"}


def scenic_layout(params: dict) -> dict:
    """Checkpoint names as the model spells them (ViT block names; a lone modality's CLS).

    Scenic names a single-modality model's CLS token `cls` whatever the modality.
    """
    params = vit_block_names(params)
    if "embedding_spectrogram/kernel" in params and "embedding/kernel" not in params \
            and "cls" in params:
        params["clsspectrogram"] = params.pop("cls")
    return params


def _square(n: int):
    root = math.isqrt(n)
    return root if root * root == n else None


def _rgb_sizes(tokens: int, patch: int, frames_per_token: int, preset: ModelConfig,
               num_frames=None, image_size=None) -> dict:
    """num_frames and image_size from the RGB position count = time steps x grid x grid.

    The count fixes only their product: `num_frames` or `image_size` (override, else the
    preset's image size) picks the split; when neither divides it, the error lists the splits.
    """
    if num_frames is not None:
        grid = _square(tokens * frames_per_token // num_frames) \
            if (tokens * frames_per_token) % num_frames == 0 else None
        if grid:
            return dict(num_frames=num_frames, image_size=grid * patch)
    else:
        grid = (image_size or preset.image_size) // patch
        if tokens % (grid * grid) == 0:
            return dict(num_frames=tokens // (grid * grid) * frames_per_token,
                        image_size=grid * patch)
    splits = [(tokens // (g * g) * frames_per_token, g * patch)
              for g in range(1, math.isqrt(tokens) + 1) if tokens % (g * g) == 0]
    asked = (f"num_frames={num_frames}" if num_frames is not None
             else f"image_size={image_size or preset.image_size}")
    raise UserError(
        f"checkpoint's RGB position embedding holds {tokens} patch tokens (time steps x "
        f"grid^2, {frames_per_token} frame(s) and {patch}x{patch} pixels per token), which "
        f"{asked} does not split; (num_frames, image_size) that fit: {splits}; pass "
        "--num-frames or --image-size")


def _spec_sizes(tokens: int, patch: int, preset: ModelConfig, spec_frames=None,
                mel_bins=None) -> dict:
    """spec_frames from the spectrogram position count = time patches x mel patches."""
    if spec_frames is not None:
        mel_bins = tokens // max(spec_frames // patch, 1) * patch
    else:
        mel_bins = mel_bins or preset.mel_bins
        spec_frames = tokens // max(mel_bins // patch, 1) * patch
    if (spec_frames // patch) * (mel_bins // patch) != tokens:
        raise UserError(
            f"checkpoint's spectrogram position embedding holds {tokens} patch tokens "
            f"(time patches x mel patches of {patch}x{patch}), which spec_frames="
            f"{spec_frames}, mel_bins={mel_bins} do not give; pass --spec-frames or --mel-bins")
    return dict(spec_frames=spec_frames, mel_bins=mel_bins)


def read_architecture(params: dict, **overrides):
    """(config, notes): the preset with every field the checkpoint determines; `overrides` win.

    From the weights: modalities, width, depth, heads, classes, classifier, patch and
    tubelet sizes, the input sizes (position-embedding lengths) and the fusion mode
    (a `bottleneck` array: bottleneck; separate per-modality blocks without it: Scenic's
    non-bottleneck mode, our `cross`; one block set for both: Scenic's share_encoder, our
    `vanilla` from layer 0). The fusion layer Lf is not in the weights: the preset's
    unless overridden, and `fusion='late'` means Lf = num_layers.
    """
    preset = from_preset(PRESET)
    modalities = tuple(m for m, key in (("rgb", "embedding/kernel"),
                                        ("spec", "embedding_spectrogram/kernel")) if key in params)
    blocks = sorted({m.group(0) for n in params if (m := _BLOCK.match(n))})
    if not modalities or not blocks or "output_projection/kernel" not in params:
        raise UserError("not an MBT checkpoint: expected embedding[_spectrogram]/kernel, "
                        f"Transformer/encoderblock_* and output_projection/kernel, got "
                        f"{sorted(params)[:8]}...")
    layers = {int(_BLOCK.match(b).group(1)) for b in blocks}
    block = blocks[0]
    query = params[block + "MultiHeadDotProductAttention_1/query/kernel"]
    token = bool({"cls", "clsspectrogram"} & set(params))
    found = dict(modalities=modalities, num_layers=len(layers), hidden_size=query.shape[0],
                 num_heads=query.shape[1],
                 mlp_dim=params[block + "MlpBlock_3/Dense_0/kernel"].shape[1],
                 num_classes=(params["output_projection/kernel"].shape[1],),
                 classifier="token" if token else "gap",
                 pre_logits_size=(params["pre_logits/kernel"].shape[1]
                                  if "pre_logits/kernel" in params else None))
    notes = []
    patches = {}
    if "rgb" in modalities:
        kernel = params["embedding/kernel"]
        tubelet = kernel.shape[0] if kernel.ndim == 5 else 0
        patches["rgb"] = kernel.shape[-4:-2]
        found.update(rgb_tokenizer="tubelet" if tubelet else "patch")
        if tubelet:
            found["tubelet_frames"] = tubelet
    if "spec" in modalities:
        kernel = params["embedding_spectrogram/kernel"]
        patches["spec"] = kernel.shape[:2]
        found["spec_channels"] = kernel.shape[2]
    sizes = set(patches.values())
    if len(sizes) != 1 or len(next(iter(sizes))) != 2 or len(set(next(iter(sizes)))) != 1:
        raise UserError(f"checkpoint's patch kernels are {patches} (height, width): this model "
                        "takes one square patch size for every modality")
    found["patch_size"] = patch = next(iter(sizes))[0]
    for m in modalities:
        count = params[_POSITIONS[m]].shape[1] - token
        if m == "rgb":
            found.update(_rgb_sizes(count, patch, found.get("tubelet_frames", 1), preset,
                                    overrides.get("num_frames"), overrides.get("image_size")))
        else:
            found.update(_spec_sizes(count, patch, preset, overrides.get("spec_frames"),
                                     overrides.get("mel_bins")))
        notes.append(f"input    {m}: {count} patch tokens"
                     + (" + CLS" if token else "") + " -> " + ", ".join(
                         f"{k}={found[k]}" for k in (("num_frames", "image_size") if m == "rgb"
                                                     else ("spec_frames", "mel_bins"))))
    if len(modalities) == 2:
        found.update(_fusion(params, found, overrides, notes))
    config = from_preset(PRESET, **{**found, **{k: v for k, v in overrides.items()
                                                if k != "fusion" or v != LATE}})
    return config, notes


def _fusion(params: dict, found: dict, overrides: dict, notes: list) -> dict:
    """fusion, fusion_layer and num_bottlenecks of a two-modality checkpoint (see above)."""
    layers = found["num_layers"]
    late = overrides.get("fusion") == LATE
    if late and overrides.get("fusion_layer", layers) != layers:
        raise UserError(f"--fusion late means fusion_layer={layers} (the checkpoint's depth), "
                        f"not fusion_layer={overrides['fusion_layer']}")
    shared = not any(n.startswith("Transformer/encoderblock_") and "_spectrogram/" in n
                     for n in params)
    if shared:
        if "bottleneck" in params or late or overrides.get("fusion_layer", 0) != 0:
            raise UserError(
                "checkpoint shares one encoder between the modalities (Scenic share_encoder="
                "True); this model has separate weights per modality below the fusion layer, "
                "so only share_encoder without bottlenecks and fusion_layer=0 (vanilla "
                "fusion) imports")
        out = dict(fusion="vanilla", fusion_layer=0)
    elif "bottleneck" in params:
        total = params["bottleneck"].shape[1]
        out = dict(fusion="bottleneck", num_bottlenecks=total)
        if found["classifier"] == "token":
            notes.append(f"fusion   bottleneck [1,{total},{found['hidden_size']}] holds "
                         f"{total} tokens: Scenic's n_bottlenecks={total - 1} (the B its config "
                         "and the paper name) plus the one it adds with classifier='token'; "
                         f"the model keeps all {total} (num_bottlenecks={total})")
    else:
        out = dict(fusion="cross")
    if late:
        out["fusion_layer"], source = layers, "from the flags"
    elif "fusion_layer" in overrides:
        out["fusion_layer"], source = overrides["fusion_layer"], "from the flags"
    elif shared:
        source = "share_encoder fuses from the first layer"
    else:
        lf = from_preset(PRESET).fusion_layer
        if lf > layers:
            raise UserError(
                f"checkpoint has {layers} layers and its fusion layer is not in the weights: "
                f"the preset's fusion_layer={lf} does not fit; pass --fusion-layer (0..{layers})")
        out["fusion_layer"], source = lf, "the preset's; not in the weights, see --fusion-layer"
    notes.append(f"fusion   {overrides.get('fusion', out['fusion'])} from layer "
                 f"{out['fusion_layer']} of {layers} (fusion layer: {source})")
    return out


def checkpoint_config(params: dict, **overrides) -> ModelConfig:
    """The model config `read_architecture` derives (without its notes)."""
    return read_architecture(params, **overrides)[0]


def load_params(model, params: dict) -> list:
    """Sets every weight of `model` from `params` ({scenic name: array}); report lines.

    Scenic creates `bottleneck` whenever its config asks for bottlenecks, even for a
    single-modality model that never fuses; it is the one array allowed to go unused when
    the model has no fusion tokens (and the report says so).
    """
    targets = model_weights(model)
    missing = sorted(set(targets) - set(params))
    unused = sorted(set(params) - set(targets))
    allowed = [n for n in unused if n == "bottleneck"]
    unused = [n for n in unused if n not in allowed]
    if missing or unused:
        raise UserError(
            "checkpoint does not match the model: "
            f"model weights with no checkpoint array: {missing or 'none'}; "
            f"checkpoint arrays no model weight takes: "
            f"{[f'{n} {shape_text(params[n].shape)}' for n in unused] or 'none'}")
    report = []
    for name, variable in targets.items():
        assign(variable, params[name], f"checkpoint {name}")
        report.append(f"loaded   {variable.path} {shape_text(variable.shape)} <- {name}")
    report += [f"unused   {n} {shape_text(params[n].shape)} (the model has no fusion tokens)"
               for n in allowed]
    return report


def import_scenic(path: str, **overrides):
    """Reads a Scenic MBT checkpoint (file, or directory: its newest checkpoint_<N>); returns
    (model, config, report)."""
    path = flax_msgpack.latest_checkpoint_file(path)
    raw, where = flax_msgpack.read_params(path)
    params = scenic_layout(raw)
    try:
        config, notes = read_architecture(params, **overrides)
    except UserError as error:  # named here: read_architecture sees arrays, not the file
        raise UserError(f"{path}: {error}") from None
    model = build_model(config)
    report = [f"read     {len(params)} arrays from {path} ({where})"] + notes
    return model, config, report + load_params(model, params)


def read_class_names(path: str, num_classes: int) -> list:
    """Display names in index order from AudioSet's class_labels_indices.csv.

    Columns index,mid,display_name; names may contain commas (quoted CSV fields).
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            rows = list(csv.DictReader(io.StringIO(f.read().decode("utf-8"), newline="")))
        names = {int(r["index"]): r["display_name"].strip() for r in rows}
    except (UnicodeDecodeError, KeyError, ValueError, TypeError, AttributeError):
        names = {}
    if not names:
        raise UserError(f"{path}: expected a UTF-8 CSV with columns index,mid,display_name")
    if sorted(names) != list(range(num_classes)):
        raise UserError(f"{path} lists {len(names)} classes with indices "
                        f"{min(names)}..{max(names)}; the model has {num_classes}")
    return [names[i] for i in range(num_classes)]


def save_imported(model, config: ModelConfig, out: str, class_names=None, saved_model_dir=None):
    """Writes the `.keras` model and, when asked, the serving SavedModel (contract.py)."""
    model.save(out)
    if saved_model_dir:
        names = class_names or [f"class_{i}" for i in range(sum(config.num_classes))]
        export_saved_model(model, config, names, saved_model_dir)
