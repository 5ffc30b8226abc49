"""Every Keras model weight addressed by its Scenic / ViT checkpoint name.

The model's layers already carry Scenic's names (mbt_keras/model.py); what differs is
Keras' variable naming (LayerNorm gamma/beta, MHA `attention_output`, the `Transformer/`
scope Flax adds). Both importers map through this one table.
"""
import re

import numpy as np

# Keras path segment -> Flax name.
_VARIABLE_NAMES = {"gamma": "scale", "beta": "bias", "attention_output": "out"}
_TRANSFORMER_SCOPE = re.compile(r"^(posembed_input|encoderblock_\d+|encoder_norm)")
# Scenic writes modality CLS tokens as 'cls' + modality name (no separator).
_SPECIAL = {"bottleneck/bottleneck": "bottleneck", "cls_rgb/cls": "cls",
            "cls_spec/cls": "clsspectrogram"}
# Linen numbers auto-named submodules per class; pre-Linen code (and the ViT .npz files,
# and our layer names) numbered them in creation order.
_LINEN_TO_VIT_BLOCK = {"LayerNorm_0": "LayerNorm_0", "MultiHeadDotProductAttention_0":
                       "MultiHeadDotProductAttention_1", "LayerNorm_1": "LayerNorm_2",
                       "MlpBlock_0": "MlpBlock_3"}
_BLOCK_CHILD = re.compile(r"(encoderblock_\d+(?:_spectrogram)?)/([A-Za-z]+_\d+)/")


def scenic_name(keras_path: str) -> str:
    """'encoderblock_0/LayerNorm_0/gamma' -> 'Transformer/encoderblock_0/LayerNorm_0/scale'."""
    if keras_path in _SPECIAL:
        return _SPECIAL[keras_path]
    name = "/".join(_VARIABLE_NAMES.get(part, part) for part in keras_path.split("/"))
    return f"Transformer/{name}" if _TRANSFORMER_SCOPE.match(name) else name


def model_weights(model) -> dict:
    """{scenic name: keras variable} for every weight of `model`; fails on a clash."""
    named = {}
    for variable in model.weights:
        name = scenic_name(variable.path)
        if name in named:
            raise ValueError(f"model weights {named[name].path} and {variable.path} both map "
                             f"to checkpoint name {name}")
        named[name] = variable
    return named


def vit_block_names(params: dict) -> dict:
    """Checkpoint names with Linen block children renamed to the ViT/pre-Linen spelling."""
    if not any("/MlpBlock_0/" in n for n in params):
        return dict(params)

    def rename(name):
        return _BLOCK_CHILD.sub(lambda m: f"{m.group(1)}/{_LINEN_TO_VIT_BLOCK[m.group(2)]}/", name)
    return {rename(n): v for n, v in params.items()}


def shape_text(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


def assign(variable, value: np.ndarray, source: str):
    """Sets `variable` to `value`, failing with both names when shapes differ."""
    if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(f"{source} has shape {shape_text(value.shape)} but model weight "
                         f"{variable.path} has shape {shape_text(variable.shape)}")
    variable.assign(np.asarray(value, dtype=variable.dtype))
