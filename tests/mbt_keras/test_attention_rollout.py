"""Attention Rollout (Abnar & Zuidema 2020) through MBT's token graph, on 4-layer micro models.

The reference is written here independently of mbt_keras.attention_rollout: one joint
matrix per layer over every token slot [RGB | spectrogram | bottleneck], multiplied.
"""
import numpy as np
import pytest

from mbt_keras import attention_rollout, contract
from mbt_keras.config import from_preset
from mbt_keras.model import build_attention_model, build_model

LAYERS, FUSION_LAYER = 4, 2
VARIANTS = {
    "late": dict(fusion="bottleneck", fusion_layer=LAYERS),
    "vanilla": dict(fusion="vanilla"),
    "vanilla_early": dict(fusion="vanilla", fusion_layer=0),
    "cross": dict(fusion="cross"),
    "bottleneck_sequential": dict(fusion="bottleneck"),
    "bottleneck_mean": dict(fusion="bottleneck", bottleneck_update="mean"),
    "bottleneck_gap": dict(fusion="bottleneck", classifier="gap", fusion_layer=0),
}


def _config(**overrides):
    return from_preset("mbt-micro", **{"num_layers": LAYERS, "fusion_layer": FUSION_LAYER,
                                       "num_heads": 4, **overrides})


def _inputs(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {"rgb": rng.random((batch, 2, 32, 32, 3)).astype("float32"),
            "spec": rng.normal(-5, 3, (batch, 96, 128)).astype("float32")}


def _maps(config, seed=0):
    """{block name: [heads, Nq, Nk]} of the first clip, and the whole output dict."""
    outputs = build_attention_model(config)(_inputs(seed=seed), training=False)
    outputs = {k: np.asarray(v) for k, v in outputs.items()}
    return {k: v[0] for k, v in outputs.items() if k != contract.OUTPUT_LOGITS}, outputs


def _residual(probabilities, offset=0):
    a = probabilities.mean(axis=0)
    a = 0.5 * a + 0.5 * np.eye(*a.shape, k=offset)
    return a / a.sum(axis=1, keepdims=True)


def _brute_force(config, maps):
    """Product over layers of [S, S] joint matrices over all slots (tokens, then bottleneck)."""
    sizes = attention_rollout.token_counts(config)
    n_rgb, n_spec = sizes["rgb"], sizes["spec"]
    bottleneck = config.fusion == "bottleneck" and config.fusion_layer < LAYERS
    b = config.num_bottlenecks if bottleneck else 0
    size = n_rgb + n_spec + b
    rgb, spec, fsn = (np.arange(n_rgb), n_rgb + np.arange(n_spec),
                      n_rgb + n_spec + np.arange(b))
    total = np.eye(size)
    for layer in range(LAYERS):
        name_rgb, name_spec = f"encoderblock_{layer}", f"encoderblock_{layer}_spectrogram"
        fused = layer >= config.fusion_layer
        if not fused:
            w = np.eye(size)
            w[np.ix_(rgb, rgb)] = _residual(maps[name_rgb])
            w[np.ix_(spec, spec)] = _residual(maps[name_spec])
        elif config.fusion == "vanilla":
            w = np.eye(size)
            both = np.concatenate([rgb, spec])
            w[np.ix_(both, both)] = _residual(maps[name_rgb])
        elif config.fusion == "cross":
            w = np.eye(size)
            both = np.concatenate([rgb, spec])
            w[np.ix_(rgb, both)] = _residual(maps[name_rgb], 0)
            w[np.ix_(spec, both)] = _residual(maps[name_spec], n_rgb)
        else:
            steps = []
            for own, name in ((rgb, name_rgb), (spec, name_spec)):
                step = np.eye(size)
                slots = np.concatenate([own, fsn])
                step[slots] = 0.0
                step[np.ix_(slots, slots)] = _residual(maps[name])
                steps.append(step)
            if config.bottleneck_update == "sequential":
                w = steps[1] @ steps[0]        # spectrogram reads what RGB wrote
            else:
                w = np.eye(size)
                w[rgb], w[spec] = steps[0][rgb], steps[1][spec]
                w[fsn] = 0.5 * (steps[0][fsn] + steps[1][fsn])
        total = w @ total
    return total, {"rgb": rgb, "spec": spec, "fsn": fsn}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_rollout_equals_the_brute_force_product_and_every_row_sums_to_one(variant):
    config = _config(**VARIANTS[variant])
    maps, _ = _maps(config)
    result = attention_rollout.rollout(config, maps)
    expected, slots = _brute_force(config, maps)
    for stream, rows in result.rows.items():
        np.testing.assert_allclose(rows, expected[slots[stream]], atol=1e-10, err_msg=stream)
        np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=1e-10, err_msg=stream)
    if config.classifier == "token":
        cls = np.mean([expected[0], expected[len(slots["rgb"])]], axis=0)
    else:
        cls = expected[np.concatenate([slots["rgb"], slots["spec"]])].mean(axis=0)
    np.testing.assert_allclose(result.output(), cls, atol=1e-10)


def test_attention_model_computes_the_model_and_real_attention_probabilities():
    config = _config(fusion="bottleneck")
    plain = build_model(config)
    probing = build_attention_model(config)
    attention_rollout.assign_weights(probing, [v.path for v in plain.variables],
                                     plain.get_weights())
    inputs = _inputs()
    outputs = probing(inputs, training=False)
    np.testing.assert_allclose(outputs[contract.OUTPUT_LOGITS], plain(inputs, training=False),
                               atol=1e-5)
    sizes = attention_rollout.token_counts(config)
    for layer in range(LAYERS):
        for name, modality in ((f"encoderblock_{layer}", "rgb"),
                               (f"encoderblock_{layer}_spectrogram", "spec")):
            probabilities = np.asarray(outputs[name])
            tokens = sizes[modality] + (config.num_bottlenecks if layer >= FUSION_LAYER else 0)
            assert probabilities.shape == (2, config.num_heads, tokens, tokens), name
            assert (probabilities >= 0).all()
            np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
    # Different clips attend differently (the maps are the clips', not constants).
    assert not np.allclose(outputs["encoderblock_0"][0], outputs["encoderblock_0"][1])


def _mass_on(result, stream, source):
    return result.rows[stream][:, result.columns[source]].sum(axis=1)


def test_late_fusion_rgb_cls_puts_zero_mass_on_spectrogram_tokens():
    config = _config(**VARIANTS["late"])
    result = attention_rollout.rollout(config, _maps(config)[0])
    assert _mass_on(result, "rgb", "spec").max() == 0.0
    assert _mass_on(result, "spec", "rgb").max() == 0.0
    assert "fsn" not in result.columns


@pytest.mark.parametrize("update", ["sequential", "mean"])
def test_bottleneck_fusion_reaches_the_other_modality_only_from_lf_on(update):
    config = _config(fusion="bottleneck", bottleneck_update=update)
    maps = _maps(config)[0]
    for layers in range(1, LAYERS + 1):
        result = attention_rollout.rollout(config, maps, layers=layers)
        crossed = {m: _mass_on(result, m, other)[0] for m, other in (("rgb", "spec"),
                                                                     ("spec", "rgb"))}
        if layers <= FUSION_LAYER:
            assert crossed == {"rgb": 0.0, "spec": 0.0}, layers
    # Eq. 8-9: the RGB CLS reads the spectrogram one layer after the first fused layer.
    assert crossed["rgb"] > 1e-4 and crossed["spec"] > 1e-4


@pytest.mark.parametrize("update", ["sequential", "mean"])
def test_bottleneck_fusion_reaches_the_other_modality_only_through_the_bottleneck(update):
    """Cut the modality tokens' attention to the bottleneck tokens: no cross-modal mass is left."""
    config = _config(fusion="bottleneck", bottleneck_update=update)
    maps, _ = _maps(config)
    sizes = attention_rollout.token_counts(config)
    cut = dict(maps)
    for layer in range(FUSION_LAYER, LAYERS):
        for name, modality in ((f"encoderblock_{layer}", "rgb"),
                               (f"encoderblock_{layer}_spectrogram", "spec")):
            probabilities = maps[name].copy()
            probabilities[:, :sizes[modality], sizes[modality]:] = 0.0
            cut[name] = probabilities
    result = attention_rollout.rollout(config, cut)
    assert _mass_on(result, "rgb", "spec").max() == 0.0
    assert _mass_on(result, "spec", "rgb").max() == 0.0
    whole = attention_rollout.rollout(config, maps)
    assert _mass_on(whole, "rgb", "spec")[0] > 1e-4


def test_rgb_and_spectrogram_maps_have_the_patch_grid_shape():
    config = _config(fusion="bottleneck")
    result = attention_rollout.rollout(config, _maps(config)[0])
    row = result.output()
    rgb = attention_rollout.rgb_map(config, row, result.columns)
    spec = attention_rollout.spec_map(config, row, result.columns)
    assert rgb.shape == (32 // 16, 32 // 16)
    assert spec.shape == (96 // 16, 128 // 16)
    # The maps hold all the mass on patches (only the CLS and bottleneck columns are left out).
    left_out = row[result.columns["rgb"]][0] + row[result.columns["spec"]][0] \
        + row[result.columns["fsn"]].sum()
    np.testing.assert_allclose(rgb.sum() + spec.sum() + left_out, 1.0, atol=1e-10)
