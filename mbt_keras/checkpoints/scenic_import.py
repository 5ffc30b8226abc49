"""Import the authors' released Scenic MBT checkpoints (MBT-B/16x2, AudioSet) into Keras.

The model is the `mbt-b16x2-scenic` preset with the architecture read off the
checkpoint's shapes (modalities, width, depth, heads, classes, bottlenecks), so the
RGB-only, spectrogram-only and RGB+spectrogram releases all import. The import is
strict: every checkpoint array sets exactly one model weight and every model weight is
set, or it fails naming the leftovers.
"""
import csv
import re

from mbt_keras.checkpoints import flax_msgpack
from mbt_keras.checkpoints.scenic_names import assign, model_weights, shape_text, vit_block_names
from mbt_keras.config import ModelConfig, from_preset
from mbt_keras.export import export_saved_model
from mbt_keras.model import build_model

PRESET = "mbt-b16x2-scenic"
_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)(_spectrogram)?/")


def checkpoint_config(params: dict, **overrides) -> ModelConfig:
    """The preset with every field the checkpoint's shapes determine; `overrides` win.

    Input sizes (frames, image size, spectrogram length) and the fusion layer are not
    recoverable from the weights; they come from the preset unless overridden.
    """
    modalities = tuple(m for m, key in (("rgb", "embedding/kernel"),
                                        ("spec", "embedding_spectrogram/kernel")) if key in params)
    blocks = sorted({m.group(0) for n in params if (m := _BLOCK.match(n))})
    if not modalities or not blocks or "output_projection/kernel" not in params:
        raise ValueError("not an MBT checkpoint: expected embedding[_spectrogram]/kernel, "
                         f"Transformer/encoderblock_* and output_projection/kernel, got "
                         f"{sorted(params)[:8]}...")
    layers = {int(_BLOCK.match(b).group(1)) for b in blocks}
    block = blocks[0]
    query = params[block + "MultiHeadDotProductAttention_1/query/kernel"]
    found = dict(modalities=modalities, num_layers=len(layers), hidden_size=query.shape[0],
                 num_heads=query.shape[1],
                 mlp_dim=params[block + "MlpBlock_3/Dense_0/kernel"].shape[1],
                 num_classes=(params["output_projection/kernel"].shape[1],),
                 classifier="token" if {"cls", "clsspectrogram"} & set(params) else "gap",
                 pre_logits_size=(params["pre_logits/kernel"].shape[1]
                                  if "pre_logits/kernel" in params else None))
    if "rgb" in modalities:
        kernel = params["embedding/kernel"]
        found.update(patch_size=kernel.shape[-3],
                     rgb_tokenizer="tubelet" if kernel.ndim == 5 else "patch")
        if kernel.ndim == 5:
            found["tubelet_frames"] = kernel.shape[0]
    if "spec" in modalities:
        kernel = params["embedding_spectrogram/kernel"]
        found.update(patch_size=kernel.shape[0], spec_channels=kernel.shape[2])
    if len(modalities) == 2 and "bottleneck" in params:
        found.update(fusion="bottleneck", num_bottlenecks=params["bottleneck"].shape[1])
    return from_preset(PRESET, **{**found, **overrides})


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
        raise ValueError(
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
    """Reads a Scenic MBT checkpoint (file or directory); returns (model, config, report)."""
    raw, where = flax_msgpack.read_params(path)
    params = vit_block_names(raw)
    config = checkpoint_config(params, **overrides)
    model = build_model(config)
    report = [f"read     {len(params)} arrays from {path} ({where})"]
    return model, config, report + load_params(model, params)


def read_class_names(path: str, num_classes: int) -> list:
    """Display names in index order from AudioSet's class_labels_indices.csv.

    Columns index,mid,display_name; names may contain commas (quoted CSV fields).
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"index", "display_name"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV with columns index,mid,display_name")
    names = {int(r["index"]): r["display_name"].strip() for r in rows}
    if sorted(names) != list(range(num_classes)):
        raise ValueError(f"{path} lists {len(names)} classes with indices "
                         f"{min(names)}..{max(names)}; the model has {num_classes}")
    return [names[i] for i in range(num_classes)]


def save_imported(model, config: ModelConfig, out: str, class_names=None, saved_model_dir=None):
    """Writes the `.keras` model and, when asked, the serving SavedModel (contract.py)."""
    model.save(out)
    if saved_model_dir:
        names = class_names or [f"class_{i}" for i in range(sum(config.num_classes))]
        export_saved_model(model, config, names, saved_model_dir)
