"""Attention flow (3.2-3.3), measured with gradients of each layer's tokens w.r.t. each input.

dependence(a, b, l) = max |d sum(tokens of modality a after layer l)^2 / d input b|.
Exactly 0 means no path from input b to those tokens exists in the computation.
"""
import numpy as np
import pytest
import tensorflow as tf

from mbt_keras.config import from_preset
from mbt_keras.model import build_token_model

LAYERS, FUSION_LAYER = 4, 2
OTHER = {"rgb": "spec", "spec": "rgb"}


def dependence(fusion, *, fusion_layer=FUSION_LAYER, exchange_bottleneck=True, **overrides):
    """{(modality, layer): cross-modal gradient magnitude} for a 4-layer micro MBT."""
    config = from_preset("mbt-micro", num_layers=LAYERS, fusion=fusion,
                         fusion_layer=fusion_layer, **overrides)
    model = build_token_model(config, exchange_bottleneck=exchange_bottleneck)
    rng = np.random.default_rng(0)
    x = {"rgb": tf.constant(rng.random((1, 2, 32, 32, 3)), tf.float32),
         "spec": tf.constant(rng.normal(-5, 3, (1, 96, 128)), tf.float32)}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(list(x.values()))
        targets = {name: tf.reduce_sum(tokens ** 2) for name, tokens in model(x).items()}
    result = {}
    for m in ("rgb", "spec"):
        for layer in range(LAYERS):
            grad = tape.gradient(targets[f"{m}_{layer}"], x[OTHER[m]])
            result[m, layer] = 0.0 if grad is None else float(tf.reduce_max(tf.abs(grad)))
    return result


def crossing(dep):
    return {key for key, value in dep.items() if value > 1e-7}


def test_late_fusion_has_no_cross_modal_gradient():
    assert crossing(dependence("bottleneck", fusion_layer=LAYERS)) == set()


@pytest.mark.parametrize("fusion", ["vanilla", "cross"])
def test_vanilla_and_cross_fusion_cross_modalities_directly_from_the_fusion_layer(fusion):
    dep = dependence(fusion)
    assert crossing(dep) == {(m, layer) for m in ("rgb", "spec")
                             for layer in range(FUSION_LAYER, LAYERS)}


def test_sequential_bottleneck_crosses_only_from_the_fusion_layer_rgb_then_spec():
    # Eq. 8-9: at the first fused layer the spectrogram stream reads the bottleneck RGB
    # has just written; RGB reads spectrogram information one layer later.
    dep = dependence("bottleneck")
    assert crossing(dep) == {("spec", 2), ("spec", 3), ("rgb", 3)}


def test_mean_bottleneck_crosses_one_layer_after_the_fusion_layer():
    # Both copies start from the same learned tokens; the averaged copy carries the
    # other modality into the next layer.
    dep = dependence("bottleneck", bottleneck_update="mean")
    assert crossing(dep) == {("spec", 3), ("rgb", 3)}


@pytest.mark.parametrize("update", ["sequential", "mean"])
def test_blocking_the_bottleneck_removes_all_cross_modal_dependency(update):
    dep = dependence("bottleneck", fusion_layer=0, bottleneck_update=update,
                     exchange_bottleneck=False)
    assert crossing(dep) == set()


def test_bottleneck_output_changes_when_only_the_other_modality_changes():
    """Perturbation check of the same claim, on values rather than gradients."""
    config = from_preset("mbt-micro", num_layers=LAYERS, fusion_layer=FUSION_LAYER)
    model = build_token_model(config)
    rng = np.random.default_rng(1)
    rgb = rng.random((1, 2, 32, 32, 3)).astype("float32")
    specs = [rng.normal(-5, 3, (1, 96, 128)).astype("float32") for _ in range(2)]
    a, b = (model({"rgb": rgb, "spec": s}) for s in specs)
    changed = {layer: not np.allclose(a[f"rgb_{layer}"], b[f"rgb_{layer}"])
               for layer in range(LAYERS)}
    assert changed == {0: False, 1: False, 2: False, 3: True}
