"""Initialise MBT from an ImageNet-21k ViT `.npz` (paper section 4.2).

Both modality streams start from the same ViT encoder. Shapes that differ from the
image model are adapted as the authors' Scenic code does: positional grids resized
bilinearly (aligned corners, as scipy.ndimage.zoom order 1) and tiled over time, the
2D patch kernel inflated to tubelets, the bottleneck tokens taken from the resized
positional grid. The classifier stays freshly initialised.
"""
import contextlib
import logging
import math
import re
import zipfile

import numpy as np

from mbt_keras.checkpoints.scenic_names import assign, model_weights, shape_text
from mbt_keras.config import ModelConfig
from mbt_keras.user_error import UserError

KERNEL_INITS = ("central", "average")
_VIT_BLOCK = re.compile(r"Transformer/encoderblock_\d+")
_SPEC_BLOCK = re.compile(r"^(Transformer/encoderblock_\d+)_spectrogram/")
POSEMB = "Transformer/posembed_input/pos_embedding"
_CLASSIFIER = ("pre_logits/", "output_projection/")
# Spectrogram-stream weights the ViT holds once for its single image stream.
_SHARED = {"embedding_spectrogram/bias": "embedding/bias", "clsspectrogram": "cls"}


def read_npz(path: str) -> dict:
    """{name: array} of a ViT checkpoint as the vision_transformer repository writes it."""
    with _open_npz(path) as data:
        return {name: data[name] for name in data.files}


def check_npz(path: str, config: ModelConfig) -> None:
    """Raises UserError unless `path` is a ViT checkpoint of config's depth; reads only the
    names of its arrays, so a model is not built for a file that cannot initialise it."""
    with _open_npz(path) as data:
        _check_vit(data.files, config, path)


@contextlib.contextmanager
def _open_npz(path: str):
    """The NpzFile of a local or remote (gs://) `path`, read through tf.io.gfile: inside a
    Vertex Trainer the ImageNet-21k checkpoint lives in a bucket. Arrays are read on demand
    (the zip's index first), so checking a 400 MB checkpoint reads kilobytes."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  # not for --help
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            try:
                data = np.load(f, allow_pickle=False)
            except (ValueError, EOFError, zipfile.BadZipFile):  # e.g. a text file
                data = None
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise UserError(f"{path} is not a .npz file (a ViT checkpoint, e.g. "
                                "ViT-B_16.npz)")
            with data:
                yield data
    except tf.errors.OpError as error:
        # GCS errors span lines; the message is one (ram:// gives none).
        why = " ".join((error.message or type(error).__name__).split())
        raise UserError(f"cannot read {path}: {why}") from None


def _check_vit(names, config: ModelConfig, path: str = "the checkpoint") -> None:
    if POSEMB not in names or "embedding/kernel" not in names:
        raise UserError(f"{path} is not a ViT checkpoint: no embedding/kernel or {POSEMB}")
    vit_layers = len({m.group(0) for n in names if (m := _VIT_BLOCK.match(n))})
    if vit_layers != config.num_layers:
        raise UserError(f"{path}: the ViT has {vit_layers} encoder blocks but the model has "
                        f"num_layers={config.num_layers}; choose a preset of its depth")


def resize_grid(grid: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of [h, w, d] to [size[0], size[1], d], corners kept in place."""
    out = grid.astype(np.float64)
    for axis, new in enumerate(size):
        old = out.shape[axis]
        coords = np.arange(new) * ((old - 1) / (new - 1)) if new > 1 else np.zeros(1)
        low = np.clip(np.floor(coords).astype(int), 0, old - 1)
        high = np.minimum(low + 1, old - 1)
        frac = (coords - low).reshape((-1,) + (1,) * (out.ndim - 1 - axis))
        out = (np.take(out, low, axis=axis) * (1 - frac) + np.take(out, high, axis=axis) * frac)
    return out.astype(grid.dtype)


def split_posemb(posemb: np.ndarray):
    """[1, (1+)g*g, d] -> (the CLS position [1, 0 or 1, d], the square grid [g, g, d])."""
    n = posemb.shape[1]
    extra = 0 if math.isqrt(n) ** 2 == n else 1
    side = math.isqrt(n - extra)
    if side * side != n - extra:
        raise ValueError(f"positional embedding of {n} tokens is not a square grid (+CLS)")
    return posemb[:, :extra], posemb[0, extra:].reshape(side, side, -1)


def grid_posemb(posemb: np.ndarray, size, repeats: int = 1, cls: bool = False) -> np.ndarray:
    """The ViT grid resized to `size`, tiled `repeats` times over time; CLS position if `cls`."""
    cls_pos, grid = split_posemb(posemb)
    tokens = np.tile(resize_grid(grid, size).reshape(1, -1, grid.shape[-1]), (1, repeats, 1))
    if cls:
        if not cls_pos.shape[1]:
            raise ValueError("the model has CLS tokens but the ViT positional embedding has no "
                             "CLS position")
        tokens = np.concatenate([cls_pos, tokens], axis=1)
    return tokens


def bottleneck_shape(num_tokens: int):
    """B tokens as the most square h x w grid (2 x 2 for B = 4, as Scenic)."""
    h = max(d for d in range(1, math.isqrt(num_tokens) + 1) if num_tokens % d == 0)
    return h, num_tokens // h


def inflate_kernel(kernel: np.ndarray, frames: int, method: str = "central") -> np.ndarray:
    """2D patch kernel [p, p, c, d] -> tubelet kernel [T, p, p, c, d].

    `central` puts the image kernel on the centre frame (zeros elsewhere), so a static
    video gives the image model's tokens; `average` spreads it evenly over the T frames.
    """
    if method not in KERNEL_INITS:
        raise ValueError(f"kernel_init={method!r}: expected one of {KERNEL_INITS}")
    if method == "average":
        return np.repeat(kernel[None] / frames, frames, axis=0)
    out = np.zeros((frames,) + kernel.shape, kernel.dtype)
    out[frames // 2] = kernel
    return out


def _source(name: str, config: ModelConfig, vit: dict, kernel_init: str):
    """(array, ViT name, how it was adapted or None) for one model weight, None to keep init."""
    p = config.patch_size
    token = config.classifier == "token"
    if name.startswith(_CLASSIFIER):
        return None
    tubelet = config.tubelet_frames if config.rgb_tokenizer == "tubelet" else 0
    kernel = vit["embedding/kernel"]
    if name == "embedding/kernel" and tubelet:
        return (inflate_kernel(kernel, tubelet, kernel_init), "embedding/kernel",
                f"inflated to {tubelet} frames, {kernel_init}")
    if name == "embedding_spectrogram/kernel" and config.spec_channels == 1:
        return kernel.sum(axis=2, keepdims=True), "embedding/kernel", "summed over colour channels"
    if name == "embedding_spectrogram/kernel":
        return kernel, "embedding/kernel", None
    posemb = vit[POSEMB]
    grid = _grid(posemb)
    if name == POSEMB:
        side, steps = config.image_size // p, config.num_frames // (tubelet or 1)
        return (grid_posemb(posemb, (side, side), steps, token), POSEMB,
                f"{grid} grid -> {side}x{side} bilinear, tiled over {steps} time steps")
    if name == "Transformer/posembed_input_spectrogram/pos_embedding":
        size = (config.spec_frames // p, config.mel_bins // p)
        return (grid_posemb(posemb, size, 1, token), POSEMB,
                f"{grid} grid -> {size[0]}x{size[1]} bilinear")
    if name == "bottleneck":
        size = bottleneck_shape(config.num_bottlenecks)
        return (grid_posemb(posemb, size), POSEMB,
                f"{grid} grid -> {size[0]}x{size[1]} bilinear = {config.num_bottlenecks} tokens")
    source = _SHARED.get(name) or _SPEC_BLOCK.sub(r"\1/", name)
    if source in vit:
        return vit[source], source, None
    return None


def _grid(posemb) -> str:
    side = split_posemb(posemb)[1].shape[0]
    return f"{side}x{side}"


def plan_from_vit(weights: dict, config: ModelConfig, vit: dict, kernel_init: str = "central"):
    """[(scenic name, value or None, ViT source, how adapted)] for {scenic name: variable}.

    Nothing is assigned, so the full-size mapping can be checked from shapes alone.
    """
    _check_vit(vit, config)
    plan = []
    for name in weights:
        value, source, how = _source(name, config, vit, kernel_init) or (None, None, None)
        plan.append((name, value, source, how))
    return plan


def init_from_vit(model, config: ModelConfig, path: str, kernel_init: str = "central") -> list:
    """Loads ViT weights into `model` (built from `config`); returns one report line per weight.

    Lines read `loaded`, `resized` (adapted shape, with how), `init` (no ViT counterpart:
    the classifier) or `unused` (a ViT array no model weight took, e.g. its `head`).
    """
    vit = read_npz(path)
    weights = model_weights(model)
    report, used = [], set()
    for name, value, source, how in plan_from_vit(weights, config, vit, kernel_init):
        variable = weights[name]
        if source is None:
            report.append(f"init     {variable.path} {shape_text(variable.shape)}")
            continue
        assign(variable, value, f"ViT {source} (as {name})")
        used.add(source)
        status = "resized " if how else "loaded  "
        report.append(f"{status} {variable.path} {shape_text(variable.shape)} <- {source}"
                      + (f" ({how})" if how else ""))
    report += [f"unused   {n} {shape_text(vit[n].shape)}" for n in sorted(set(vit) - used)]
    return report


def vit_init_fn(config: ModelConfig, path: str, kernel_init: str = "central"):
    """`init_fn(model)` for `training.train`: loads the ViT weights before training starts
    (not on resume) and logs the one-line-per-weight report."""
    def init_fn(model):
        for line in init_from_vit(model, config, path, kernel_init=kernel_init):
            logging.info("init-from-vit: %s", line)
    return init_fn
