"""Pretrained weights: ViT `.npz` initialisation and the Scenic MBT import.

Checkpoints are written here in the real layouts (names, nesting, Flax's msgpack
extension types) with random values; most are shrunk in width and depth for speed, and
one test checks the full ViT-B/16 and MBT-B/16x2 name/shape inventories.
"""
import csv
import math
import os

import keras
import msgpack
import numpy as np
import pytest
import tensorflow as tf

from mbt_keras import contract
from mbt_keras.checkpoints import flax_msgpack, scenic_import, vit_npz
from mbt_keras.checkpoints.scenic_names import model_weights, vit_block_names
from mbt_keras.config import from_preset
from mbt_keras.model import build_model
from mbt_keras.user_error import UserError
from pipeline import cli

VIT_NAMES = ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
LINEN_NAMES = ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")
# Released MBT-B/16x2 options at a width/depth/input size a CPU test affords; two fused
# layers, so the averaged bottleneck of one layer feeds the next.
SMALL = dict(num_layers=3, num_heads=2, hidden_size=32, mlp_dim=64, num_frames=4, image_size=32,
             spec_frames=64, fusion_layer=1)


# --- checkpoint layouts -------------------------------------------------------------------

def block_shapes(prefix, hidden, heads, mlp, names):
    ln0, attention, ln1, mlp_block = names
    head_dim = hidden // heads
    shapes = {f"{prefix}/{ln}/{v}": (hidden,) for ln in (ln0, ln1) for v in ("scale", "bias")}
    for proj in ("query", "key", "value"):
        shapes[f"{prefix}/{attention}/{proj}/kernel"] = (hidden, heads, head_dim)
        shapes[f"{prefix}/{attention}/{proj}/bias"] = (heads, head_dim)
    shapes[f"{prefix}/{attention}/out/kernel"] = (heads, head_dim, hidden)
    shapes[f"{prefix}/{attention}/out/bias"] = (hidden,)
    shapes.update({f"{prefix}/{mlp_block}/Dense_0/kernel": (hidden, mlp),
                   f"{prefix}/{mlp_block}/Dense_0/bias": (mlp,),
                   f"{prefix}/{mlp_block}/Dense_1/kernel": (mlp, hidden),
                   f"{prefix}/{mlp_block}/Dense_1/bias": (hidden,)})
    return shapes


def vit_shapes(hidden=768, heads=12, mlp=3072, layers=12, grid=14, classes=21843):
    """google-research/vision_transformer ViT-B/16 ImageNet-21k .npz (with its pre_logits)."""
    shapes = {"cls": (1, 1, hidden), "embedding/kernel": (16, 16, 3, hidden),
              "embedding/bias": (hidden,), "head/kernel": (hidden, classes), "head/bias": (classes,),
              "pre_logits/kernel": (hidden, hidden), "pre_logits/bias": (hidden,),
              "Transformer/posembed_input/pos_embedding": (1, 1 + grid * grid, hidden),
              "Transformer/encoder_norm/scale": (hidden,), "Transformer/encoder_norm/bias": (hidden,)}
    for layer in range(layers):
        shapes.update(block_shapes(f"Transformer/encoderblock_{layer}", hidden, heads, mlp, VIT_NAMES))
    return shapes


def scenic_shapes(hidden=768, heads=12, mlp=3072, layers=12, rgb_tokens=3136, spec_tokens=400,
                  bottlenecks=4, classes=527, modalities=("rgb", "spec"), names=LINEN_NAMES,
                  patch=16, tubelet=2, classifier="gap", share=False, pre_logits=None):
    """Parameters of Scenic's MBT (by default the released one: gap, 3d_conv 16x16x2, 3-channel
    spectrogram). `bottlenecks` is Scenic's n_bottlenecks (None: its non-bottleneck mode);
    tubelet=0 is temporal_sampling (2D patches); token counts exclude CLS; `share` is
    share_encoder (one block per layer for both modalities)."""
    token = classifier == "token"
    width = pre_logits or hidden
    shapes = {"output_projection/kernel": (width, classes), "output_projection/bias": (classes,),
              "Transformer/encoder_norm/scale": (hidden,), "Transformer/encoder_norm/bias": (hidden,)}
    if bottlenecks is not None:
        shapes["bottleneck"] = (1, bottlenecks + token, hidden)  # Scenic adds one for 'token'
    if pre_logits:
        shapes.update({"pre_logits/kernel": (hidden, width), "pre_logits/bias": (width,)})
    rgb_kernel = ((tubelet,) if tubelet else ()) + (patch, patch, 3, hidden)
    for m, suffix, kernel, tokens in (("rgb", "", rgb_kernel, rgb_tokens),
                                      ("spec", "_spectrogram", (patch, patch, 3, hidden), spec_tokens)):
        if m not in modalities:
            continue
        shapes.update({f"embedding{suffix}/kernel": kernel, f"embedding{suffix}/bias": (hidden,),
                       f"Transformer/posembed_input{suffix}/pos_embedding": (1, tokens + token, hidden)})
        if token:
            shapes["cls" + ("spectrogram" if m == "spec" and len(modalities) == 2 else "")] = (1, 1, hidden)
        for layer in range(layers):
            shapes.update(block_shapes(f"Transformer/encoderblock_{layer}{'' if share else suffix}",
                                       hidden, heads, mlp, names))
    return shapes


def random_arrays(shapes, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in shapes.items():
        value = rng.normal(size=shape) * (0.3 if len(shape) > 1 else 0.1)
        if name.endswith("/scale"):
            value += 1.0
        arrays[name] = value.astype(np.float32)
    return arrays


def nest(flat):
    tree = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def _ndarray_ext(a):
    return msgpack.packb((a.shape, a.dtype.name, a.tobytes("C")), use_bin_type=True)


def flax_bytes(state):
    """What flax.serialization.to_bytes writes: ext 1 ndarray, 2 complex, 3 numpy scalar."""
    def ext(obj):
        if isinstance(obj, np.ndarray):
            return msgpack.ExtType(1, _ndarray_ext(obj))
        if isinstance(obj, np.generic):
            return msgpack.ExtType(3, _ndarray_ext(np.asarray(obj)))
        if isinstance(obj, complex):
            return msgpack.ExtType(2, msgpack.packb((obj.real, obj.imag)))
        raise TypeError(type(obj))
    return msgpack.packb(state, default=ext, strict_types=True)


def train_state(params, layout):
    """A Scenic train state holding `params` as the optax or flax.optim trainer saved it."""
    common = {"global_step": np.int64(50000), "rng": np.array([0, 42], np.uint32),
              "model_state": {}, "accum_train_time": 1234.5}
    if layout == "params":
        return {**common, "params": params, "opt_state": {"0": {"trace": params}}}
    target = {"params": params} if layout == "optimizer.target.params" else params
    momentum = {"step": np.int64(50000), "param_states": {"momentum": params}}
    return {**common, "optimizer": {"target": target, "state": momentum}}


def write_scenic(path, flat, layout="optimizer.target"):
    with open(path, "wb") as f:
        f.write(flax_bytes(train_state(nest(flat), layout)))
    return str(path)


# --- the math, in NumPy, straight from checkpoint arrays -------------------------------------

def layer_norm(x, p, prefix):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-6) * p[prefix + "/scale"] + p[prefix + "/bias"]


def encoder_block(x, p, prefix, names):
    """Scenic's EncoderBlock / ViT Encoder1DBlock: pre-LN attention and MLP, tanh GELU."""
    ln0, attention, ln1, mlp = (f"{prefix}/{n}" for n in names)
    y = layer_norm(x, p, ln0)
    q, k, v = (np.einsum("btd,dhk->bthk", y, p[f"{attention}/{n}/kernel"]) + p[f"{attention}/{n}/bias"]
               for n in ("query", "key", "value"))
    logits = np.einsum("bqhk,bshk->bhqs", q / np.sqrt(q.shape[-1]), k)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = np.einsum("bhqs,bshk->bqhk", weights, v)
    x = x + np.einsum("bqhk,hkd->bqd", attended, p[f"{attention}/out/kernel"]) + p[f"{attention}/out/bias"]
    h = layer_norm(x, p, ln1) @ p[f"{mlp}/Dense_0/kernel"] + p[f"{mlp}/Dense_0/bias"]
    h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    return x + h @ p[f"{mlp}/Dense_1/kernel"] + p[f"{mlp}/Dense_1/bias"]


def patches(x, kernel, bias):
    """Non-overlapping conv = matmul over flattened patches; x [B, (T,) H, W, C]."""
    *size, c, d = kernel.shape
    b = x.shape[0]
    grid = [n // s for n, s in zip(x.shape[1:-1], size)]
    x = x.reshape([b] + [v for g, s in zip(grid, size) for v in (g, s)] + [c])
    n = len(size)
    x = x.transpose([0] + [1 + 2 * i for i in range(n)] + [2 + 2 * i for i in range(n)] + [1 + 2 * n])
    return x.reshape(b, math.prod(grid), -1) @ kernel.reshape(-1, d) + bias


def scenic_mbt(p, rgb, spec, config, names):
    """Scenic's MBT.__call__ and Encoder in eval mode, straight from checkpoint arrays.

    Fusion from layer config.fusion_layer on, by Scenic's three branches: a `bottleneck`
    array (mean update), separate per-modality blocks (each over [other modality || itself],
    keeping its own tokens), or share_encoder (one block over all tokens). Classifier: gap,
    or each modality's CLS through the shared head, averaged.
    """
    x = {}
    if "embedding/kernel" in p:
        video, kernel = rgb * 2 - 1, p["embedding/kernel"]
        if kernel.ndim == 4:  # temporal_sampling: frames stacked along the height, 2D patches
            b, t, h, w, c = video.shape
            video = video.reshape(b, t * h, w, c)
        x["rgb"] = patches(video, kernel, p["embedding/bias"])
    if "embedding_spectrogram/kernel" in p:
        kernel = p["embedding_spectrogram/kernel"]
        image = np.repeat(((spec - config.spec_mean) / config.spec_std)[..., None], kernel.shape[2], -1)
        x["spec"] = patches(image, kernel, p["embedding_spectrogram/bias"])
    batch = next(iter(x.values())).shape[0]
    token = "cls" in p or "clsspectrogram" in p
    suffix = {"rgb": "", "spec": "_spectrogram"}
    for m in x:
        if token:
            cls = p["cls" if m == "rgb" or len(x) == 1 else "clsspectrogram"]
            x[m] = np.concatenate([np.repeat(cls, batch, 0), x[m]], 1)
        x[m] = x[m] + p[f"Transformer/posembed_input{suffix[m]}/pos_embedding"]
    share = not any(n.startswith("Transformer/encoderblock_") and "_spectrogram/" in n for n in p)
    bottleneck = np.repeat(p["bottleneck"], batch, axis=0) if "bottleneck" in p else None
    combined = None
    for layer in range(config.num_layers):
        name = {m: f"Transformer/encoderblock_{layer}{'' if share else suffix[m]}" for m in x}
        if layer < config.fusion_layer or len(x) == 1:
            x = {m: encoder_block(v, p, name[m], names) for m, v in x.items()}
        elif bottleneck is not None:
            fused = {m: encoder_block(np.concatenate([v, bottleneck], 1), p, name[m], names)
                     for m, v in x.items()}
            bottleneck = np.mean([out[:, x[m].shape[1]:] for m, out in fused.items()], axis=0)
            x = {m: out[:, :x[m].shape[1]] for m, out in fused.items()}
        elif not share:
            x = {m: encoder_block(np.concatenate([o for k, o in x.items() if k != m] + [v], 1),
                                  p, name[m], names)[:, -v.shape[1]:] for m, v in x.items()}
        else:
            combined = np.concatenate(list(x.values()), 1) if combined is None else combined
            combined = encoder_block(combined, p, name["rgb"], names)
    encoded = combined if combined is not None else np.concatenate(list(x.values()), 1)
    encoded = layer_norm(encoded, p, "Transformer/encoder_norm")
    if token:
        starts = np.cumsum([0] + [v.shape[1] for v in x.values()])[:-1]
        pooled = [encoded[:, s] for s in starts]
    else:
        pooled = [encoded.mean(1)]
    if "pre_logits/kernel" in p:
        pooled = [np.tanh(v @ p["pre_logits/kernel"] + p["pre_logits/bias"]) for v in pooled]
    return np.mean([v @ p["output_projection/kernel"] + p["output_projection/bias"] for v in pooled], 0)


def small_scenic(classes=5, modalities=("rgb", "spec"), names=LINEN_NAMES, seed=0):
    """A released-layout checkpoint at SMALL's sizes: 2x2x2 tubelets x 2 steps, 4x8 spectrogram."""
    return random_arrays(scenic_shapes(hidden=32, heads=2, mlp=64, layers=3, rgb_tokens=8,
                                       spec_tokens=32, classes=classes, modalities=modalities,
                                       names=names), seed)


def inputs(config, seed=1):
    rng = np.random.default_rng(seed)
    return {"rgb": rng.uniform(size=(2, config.num_frames, config.image_size, config.image_size, 3)),
            "spec": rng.normal(1.0, 3.0, size=(2, config.spec_frames, config.mel_bins))}


# --- Flax msgpack ----------------------------------------------------------------------------

def test_flax_msgpack_decodes_arrays_scalars_complex_bfloat16_and_chunks(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)  # truncated to bfloat16
    state = {"params": {"w": values, "i": np.arange(5, dtype=np.int8)},
             "step": np.int64(7), "z": complex(1.5, -2.0),
             "bf": msgpack.ExtType(1, msgpack.packb(((3, 4), "bfloat16", bf16.tobytes()),
                                                    use_bin_type=True)),
             "big": {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 3},
                     "chunks": {"0": np.arange(4.0), "1": np.arange(4.0, 6.0)}}}
    path = tmp_path / "checkpoint_7"
    path.write_bytes(flax_bytes(state))
    got = flax_msgpack.read_state(str(path))
    np.testing.assert_array_equal(got["params"]["w"], values)
    assert got["params"]["i"].dtype == np.int8
    assert got["step"] == 7 and isinstance(got["step"], np.int64)
    assert got["z"] == complex(1.5, -2.0)
    np.testing.assert_allclose(got["bf"], values, rtol=2 ** -7)
    assert got["bf"].dtype == np.float32
    np.testing.assert_array_equal(got["big"], np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("layout", ["params", "optimizer.target", "optimizer.target.params"])
def test_params_are_found_in_every_scenic_train_state_layout(tmp_path, layout):
    flat = {"embedding/kernel": np.ones((2, 2), np.float32), "Transformer/encoder_norm/scale":
            np.full(3, 2.0, np.float32)}
    params, where = flax_msgpack.read_params(write_scenic(tmp_path / "ckpt", flat, layout))
    assert where == layout
    assert sorted(params) == sorted(flat)
    np.testing.assert_array_equal(params["Transformer/encoder_norm/scale"], [2.0, 2.0, 2.0])


def test_checkpoint_directory_resolves_to_highest_step(tmp_path):
    for step in (2, 10, 9):
        write_scenic(tmp_path / f"checkpoint_{step}", {"a": np.full(1, step, np.float32)}, "params")
    params, _ = flax_msgpack.read_params(str(tmp_path))
    assert params["a"][0] == 10


def test_non_checkpoint_file_is_rejected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not msgpack at all")
    with pytest.raises(ValueError, match="not a Flax"):
        flax_msgpack.read_state(str(path))


# --- ViT initialisation ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    """A ViT .npz in the real layout at mbt-micro's width (14x14 grid, CLS, head, pre_logits)."""
    arrays = random_arrays(vit_shapes(hidden=32, heads=2, mlp=64, layers=2, classes=11), seed=3)
    path = tmp_path_factory.mktemp("vit") / "ViT-micro.npz"
    np.savez(path, **arrays)
    return str(path), arrays


def test_vit_init_puts_the_same_encoder_in_both_streams(tiny_vit):
    path, vit = tiny_vit
    config = from_preset("mbt-micro")
    model = build_model(config)
    report = vit_npz.init_from_vit(model, config, path)
    x = np.random.default_rng(5).normal(size=(2, 7, 32)).astype(np.float32)
    expected = encoder_block(x.astype(np.float64), vit, "Transformer/encoderblock_1", VIT_NAMES)
    for stream in ("encoderblock_1", "encoderblock_1_spectrogram"):
        got = model.get_layer(stream)(x, training=False)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)
    weights = model_weights(model)
    np.testing.assert_array_equal(weights["Transformer/encoder_norm/scale"].numpy(),
                                  vit["Transformer/encoder_norm/scale"])
    np.testing.assert_array_equal(weights["clsspectrogram"].numpy(), vit["cls"])
    assert len([line for line in report if not line.startswith("unused")]) == len(model.weights)
    assert any(line.startswith("unused   head/kernel [32,11]") for line in report)


def test_vit_init_resizes_positions_and_adapts_patch_kernels(tiny_vit):
    path, vit = tiny_vit
    config = from_preset("mbt-micro")  # 32x32 frames -> 2x2 grid, 96x128 spectrogram -> 6x8
    model = build_model(config)
    vit_npz.init_from_vit(model, config, path)
    weights = model_weights(model)
    posemb = vit["Transformer/posembed_input/pos_embedding"]
    grid = posemb[0, 1:].reshape(14, 14, 32)
    rgb = weights["Transformer/posembed_input/pos_embedding"].numpy()[0]
    # CLS position, then the 2x2 corners of the 14x14 grid, repeated for each of 2 frames.
    corners = grid[[0, 0, 13, 13], [0, 13, 0, 13]]
    np.testing.assert_allclose(rgb, np.concatenate([posemb[0, :1], corners, corners]), atol=1e-6)
    spec = weights["Transformer/posembed_input_spectrogram/pos_embedding"].numpy()[0, 1:]
    spec = spec.reshape(6, 8, 32)
    # Row 1 of 6 samples grid row 13/5 = 2.6; column 1 of 8 samples column 13/7.
    r, c = 13 / 5, 13 / 7
    expected = ((1 - (r - 2)) * ((1 - (c - 1)) * grid[2, 1] + (c - 1) * grid[2, 2])
                + (r - 2) * ((1 - (c - 1)) * grid[3, 1] + (c - 1) * grid[3, 2]))
    np.testing.assert_allclose(spec[1, 1], expected, atol=1e-5)
    np.testing.assert_allclose(spec[5, 7], grid[13, 13], atol=1e-6)
    np.testing.assert_allclose(weights["embedding_spectrogram/kernel"].numpy(),
                               vit["embedding/kernel"].sum(axis=2, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(weights["bottleneck"].numpy()[0], corners, atol=1e-6)


@pytest.mark.parametrize("kernel_init", ["central", "average"])
def test_vit_init_inflates_tubelets_and_keeps_the_classifier_fresh(tiny_vit, kernel_init):
    path, vit = tiny_vit
    config = from_preset("mbt-b16x2-scenic", **{**SMALL, "num_layers": 2}, num_classes=5)
    model = build_model(config)
    before = model.get_layer("output_projection").get_weights()
    report = vit_npz.init_from_vit(model, config, path, kernel_init=kernel_init)
    weights = model_weights(model)
    kernel = weights["embedding/kernel"].numpy()
    image_kernel = vit["embedding/kernel"]
    if kernel_init == "central":
        np.testing.assert_array_equal(kernel[1], image_kernel)
        np.testing.assert_array_equal(kernel[0], np.zeros_like(image_kernel))
    else:
        np.testing.assert_allclose(kernel, np.stack([image_kernel / 2] * 2), atol=1e-7)
    # 3-channel spectrogram: the RGB kernel as it is.
    np.testing.assert_array_equal(weights["embedding_spectrogram/kernel"].numpy(), image_kernel)
    for old, new in zip(before, model.get_layer("output_projection").get_weights()):
        np.testing.assert_array_equal(old, new)
    assert "init     output_projection/kernel [32,5]" in report
    assert any(line.startswith("resized  embedding/kernel") and kernel_init in line for line in report)


def test_vit_init_reads_the_npz_from_a_file_system_uri_as_from_a_local_path(tiny_vit):
    """Inside a Vertex Trainer the ImageNet-21k checkpoint is on gs://; TensorFlow's ram://
    stands in for it (tf.io.gfile, as gs:// is read)."""
    path, _ = tiny_vit
    uri = "ram://vit_init/ViT-micro.npz"
    tf.io.gfile.makedirs("ram://vit_init")
    tf.io.gfile.copy(path, uri, overwrite=True)
    config = from_preset("mbt-micro")
    vit_npz.check_npz(uri, config)
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(0)  # the classifier keeps its initial weights
        models.append(build_model(config))
    reports = [vit_npz.init_from_vit(m, config, p) for m, p in zip(models, (path, uri))]
    assert reports[0] == reports[1]
    for local, remote in zip(*(m.get_weights() for m in models)):
        np.testing.assert_array_equal(local, remote)
    with pytest.raises(UserError, match="^cannot read ram://vit_init/missing.npz: "):
        vit_npz.check_npz("ram://vit_init/missing.npz", config)


def test_vit_init_rejects_a_different_depth(tiny_vit):
    config = from_preset("mbt-tiny", hidden_size=32)
    with pytest.raises(ValueError, match="2 encoder blocks but the model has num_layers=4"):
        vit_npz.init_from_vit(build_model(config), config, tiny_vit[0])


# --- Scenic import ---------------------------------------------------------------------------

@pytest.mark.parametrize("names,layout", [(LINEN_NAMES, "optimizer.target"),
                                          (VIT_NAMES, "optimizer.target.params")])
def test_scenic_import_reproduces_scenic_mbt_forward_pass(tmp_path, names, layout):
    flat = small_scenic(names=names)
    path = write_scenic(tmp_path / "mbt_small", flat, layout)
    model, config, report = scenic_import.import_scenic(path, **SMALL)
    assert config.num_classes == (5,) and config.classifier == "gap"
    assert config.bottleneck_update == "mean" and config.num_bottlenecks == 4
    assert report[0].endswith(f"({layout})")
    assert len([line for line in report if line.startswith("loaded ")]) == len(flat) \
        == len(model.weights)
    x = inputs(config)
    expected = scenic_mbt({n: v.astype(np.float64) for n, v in flat.items()},
                          x["rgb"], x["spec"], config, names)
    got = model({m: tf.constant(v, tf.float32) for m, v in x.items()}, training=False)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-3, atol=1e-4)


# Checkpoints Scenic's MBT writes with other settings, at CPU-test widths (3 layers, d=32):
# (checkpoint shapes, the flags a user passes, the config fields the import must arrive at).
SCENIC_VARIANTS = {
    "bottleneck-token-tubelet4-patch8": (
        dict(patch=8, tubelet=4, rgb_tokens=2 * 3 * 3, spec_tokens=6 * 16, classifier="token",
             bottlenecks=3),
        dict(image_size=24, fusion_layer=2),
        dict(num_frames=8, image_size=24, spec_frames=48, patch_size=8, tubelet_frames=4,
             fusion="bottleneck", num_bottlenecks=4, classifier="token")),
    "cross-2d-patches-224-prelogits": (
        dict(tubelet=0, rgb_tokens=2 * 14 * 14, spec_tokens=2 * 8, bottlenecks=None, pre_logits=16),
        dict(fusion_layer=1),
        dict(num_frames=2, image_size=224, spec_frames=32, rgb_tokenizer="patch", fusion="cross",
             pre_logits_size=16)),
    "cross-token-early": (
        dict(rgb_tokens=8, spec_tokens=6 * 8, classifier="token", bottlenecks=None),
        dict(image_size=32, fusion_layer=0),
        dict(num_frames=4, spec_frames=96, fusion="cross", fusion_layer=0, classifier="token")),
    "late-with-unused-bottleneck": (
        dict(rgb_tokens=8, spec_tokens=2 * 8),
        dict(num_frames=4, fusion="late"),
        dict(image_size=32, spec_frames=32, fusion="bottleneck", fusion_layer=3)),
    "share-encoder-vanilla": (
        dict(rgb_tokens=8, spec_tokens=2 * 8, bottlenecks=None, share=True),
        dict(image_size=32),
        dict(num_frames=4, spec_frames=32, fusion="vanilla", fusion_layer=0)),
}


@pytest.mark.parametrize("variant", sorted(SCENIC_VARIANTS))
def test_scenic_import_reads_sizes_and_fusion_and_reproduces_scenic(tmp_path, variant):
    shapes, flags, expected = SCENIC_VARIANTS[variant]
    flat = random_arrays(scenic_shapes(hidden=32, heads=2, mlp=64, layers=3, classes=5, **shapes),
                         seed=len(variant))
    model, config, report = scenic_import.import_scenic(write_scenic(tmp_path / variant, flat),
                                                        **flags)
    assert {k: getattr(config, k) for k in expected} == expected
    assert len([line for line in report if line.startswith("loaded ")]) == len(model.weights)
    x = inputs(config)
    want = scenic_mbt({n: v.astype(np.float64) for n, v in flat.items()}, x["rgb"], x["spec"],
                      config, LINEN_NAMES)
    got = model({m: tf.constant(v, tf.float32) for m, v in x.items()}, training=False)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3, atol=1e-4)


def test_token_classifier_bottleneck_report_names_scenics_n_bottlenecks(tmp_path):
    shapes, flags, _ = SCENIC_VARIANTS["bottleneck-token-tubelet4-patch8"]
    flat = random_arrays(scenic_shapes(hidden=32, heads=2, mlp=64, layers=3, classes=5, **shapes))
    _, config, report = scenic_import.import_scenic(write_scenic(tmp_path / "tok", flat), **flags)
    assert config.num_bottlenecks == 4
    assert ("fusion   bottleneck [1,4,32] holds 4 tokens: Scenic's n_bottlenecks=3 (the B its "
            "config and the paper name) plus the one it adds with classifier='token'") in "\n".join(report)
    assert "input    rgb: 18 patch tokens + CLS -> num_frames=8, image_size=24" in report


def test_scenic_import_lists_the_input_sizes_that_fit_when_the_tokens_leave_them_open(tmp_path):
    path = write_scenic(tmp_path / "open", small_scenic())
    with pytest.raises(ValueError) as error:
        scenic_import.import_scenic(path, fusion_layer=1)
    message = str(error.value)
    assert "holds 8 patch tokens" in message and "image_size=224 does not split" in message
    assert "[(16, 16), (4, 32)]" in message and "--num-frames or --image-size" in message
    with pytest.raises(ValueError, match="pass --fusion-layer"):
        scenic_import.import_scenic(path, image_size=32)
    with pytest.raises(ValueError, match="--fusion late means fusion_layer=3"):
        scenic_import.import_scenic(path, image_size=32, fusion="late", fusion_layer=1)


def test_scenic_import_fails_naming_leftovers(tmp_path):
    flat = small_scenic()
    del flat["Transformer/encoderblock_2_spectrogram/LayerNorm_1/bias"]
    flat["Transformer/extra_norm/scale"] = np.ones(32, np.float32)
    path = write_scenic(tmp_path / "broken", flat)
    with pytest.raises(ValueError) as error:
        scenic_import.import_scenic(path, **SMALL)
    message = str(error.value)
    assert "Transformer/encoderblock_2_spectrogram/LayerNorm_2/bias" in message
    assert "Transformer/extra_norm/scale [32]" in message


def test_spectrogram_only_release_imports_and_reports_its_unused_bottleneck(tmp_path):
    path = write_scenic(tmp_path / "spec_only", small_scenic(modalities=("spec",)), "params")
    model, config, report = scenic_import.import_scenic(path, **SMALL)
    assert config.modalities == ("spec",)
    assert report[-1].startswith("unused   bottleneck [1,4,32]")
    spec = inputs(config)["spec"]
    assert model({"spec": tf.constant(spec, tf.float32)}).shape == (2, 5)


def test_imported_release_serves_527_audioset_scores(tmp_path):
    path = write_scenic(tmp_path / "mbtb32_as-mini_rgb-spec", small_scenic(classes=527))
    labels = tmp_path / "class_labels_indices.csv"
    with open(labels, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows([i, f"/m/{i:05d}", f"Sound {i}, type"] for i in range(527))
    out, saved = tmp_path / "mbt.keras", tmp_path / "serving" / "mbt" / "1"
    # mbt-b16x2-scenic's input sizes are not in the weights: the test's small model needs
    # the SMALL sizes, so it calls the library the CLI wraps.
    model, config, _ = scenic_import.import_scenic(path, **SMALL)
    names = scenic_import.read_class_names(str(labels), 527)
    scenic_import.save_imported(model, config, str(out), names, str(saved))
    loaded = tf.saved_model.load(str(saved))
    rng = np.random.default_rng(0)
    frames = tf.constant(rng.integers(0, 255, size=(1, 6, 40, 48, 3)), tf.uint8)
    waveform = tf.constant(rng.uniform(-0.5, 0.5, size=(1, 16000)), tf.float32)
    result = loaded.signatures[contract.SIG_UINT8](frames_uint8=frames, waveform=waveform)
    scores = result[contract.OUT_SCORES].numpy()
    assert scores.shape == (1, 527) and np.all((scores > 0) & (scores < 1))
    top = [n.decode() for n in result[contract.OUT_TOP_K_NAMES].numpy()[0]]
    assert top[0] == f"Sound {int(np.argmax(scores))}, type"
    assert os.path.getsize(out) > 0


def test_cli_import_scenic_writes_a_keras_model(tmp_path, capsys):
    flat = random_arrays(scenic_shapes(hidden=32, heads=2, mlp=64, layers=1, classes=3))
    path = write_scenic(tmp_path / "ckpt", flat)
    out = tmp_path / "imported.keras"
    assert cli.main(["import-scenic", path, "--out", str(out), "--fusion-layer", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert "loaded   output_projection/kernel [32,3] <- output_projection/kernel" in printed
    assert "input    rgb: 3136 patch tokens -> num_frames=32, image_size=224" in printed


def test_cli_import_scenic_reads_a_workdir_and_class_labels_on_a_bucket(tmp_path, capsys):
    """A Scenic workdir and AudioSet's CSV on gs:// (TensorFlow's ram:// stands in): the
    newest checkpoint_<N> of the folder is imported, as from a local folder."""
    flat = random_arrays(scenic_shapes(hidden=32, heads=2, mlp=64, layers=1, classes=3))
    bucket = f"ram://scenic_{os.getpid()}/workdir"
    tf.io.gfile.makedirs(bucket)
    tf.io.gfile.copy(write_scenic(tmp_path / "old", random_arrays(scenic_shapes(
        hidden=32, heads=2, mlp=64, layers=1, classes=3))), bucket + "/checkpoint_100")
    tf.io.gfile.copy(write_scenic(tmp_path / "new", flat), bucket + "/checkpoint_2000")
    with tf.io.gfile.GFile(bucket + "/labels.csv", "w") as f:
        f.write('index,mid,display_name\n0,/m/0,"Dog, barking"\n1,/m/1,Cat\n2,/m/2,Bird\n')
    out = tmp_path / "imported.keras"
    assert cli.main(["import-scenic", bucket, "--out", str(out), "--fusion-layer", "1",
                     "--class-labels", bucket + "/labels.csv"]) == 0
    assert f"read     {len(flat)} arrays from {bucket}/checkpoint_2000" in capsys.readouterr().out
    kernel = keras.models.load_model(out).get_layer("output_projection").kernel
    np.testing.assert_array_equal(np.array(kernel), flat["output_projection/kernel"])
    assert cli.main(["import-scenic", bucket + "_nope", "--out", str(out)]) == 2
    assert f"checkpoint {bucket}_nope: no such file or folder" in capsys.readouterr().err


def test_cli_import_scenic_takes_cross_fusion_and_input_sizes_from_flags(tmp_path, capsys):
    flat = random_arrays(scenic_shapes(hidden=32, heads=2, mlp=64, layers=2, classes=3,
                                       rgb_tokens=8, spec_tokens=12, bottlenecks=None))
    out = tmp_path / "cross.keras"
    assert cli.main(["import-scenic", write_scenic(tmp_path / "ckpt", flat), "--out", str(out),
                     "--fusion-layer", "1", "--image-size", "32", "--spec-frames", "48"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "fusion   cross from layer 1 of 2 (fusion layer: from the flags)" in printed
    assert "input    spec: 12 patch tokens -> spec_frames=48, mel_bins=64" in printed
    loaded = keras.models.load_model(out)
    assert (None, 48, 64) in [tuple(i.shape) for i in loaded.inputs] and loaded.name == "mbt_cross"


def test_cli_init_from_vit_reports_each_weight_and_writes_a_keras_model(tmp_path, tiny_vit, capsys):
    out = tmp_path / "micro.keras"
    assert cli.main(["init-from-vit", tiny_vit[0], "--preset", "mbt-micro", "--num-classes", "3",
                     "--kernel-init", "average", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "init     output_projection/kernel [32,3]" in printed
    assert any(line.startswith("resized  posembed_input_spectrogram/pos_embedding [1,49,32] <- "
                               "Transformer/posembed_input/pos_embedding (14x14 grid -> 6x8")
               for line in printed)
    assert printed[-1] == f"wrote {out}" and os.path.getsize(out) > 0


# --- full-size inventories -------------------------------------------------------------------

@pytest.fixture(scope="module")
def released_model():
    """MBT-B/16x2 at full size, built from the preset the import derives from the checkpoint."""
    shapes = scenic_shapes()
    params = {n: np.broadcast_to(np.float32(0), s) for n, s in shapes.items()}
    config = scenic_import.checkpoint_config(vit_block_names(params))
    return build_model(config), config, shapes


def test_released_mbt_b16x2_inventory_matches_the_model_exactly(released_model):
    model, config, shapes = released_model
    assert config == from_preset("mbt-b16x2-scenic", num_classes=527)
    expected = {n: tuple(s) for n, s in vit_block_names(shapes).items()}
    got = {n: tuple(v.shape) for n, v in model_weights(model).items()}
    assert got == expected


def test_vit_b16_inventory_maps_onto_every_encoder_weight(released_model):
    model, config, _ = released_model
    vit = {n: np.broadcast_to(np.float32(0), s) for n, s in vit_shapes().items()}
    weights = model_weights(model)
    plan = vit_npz.plan_from_vit(weights, config, vit)
    for name, value, source, _ in plan:
        if source is not None:
            assert value.shape == tuple(weights[name].shape), name
    fresh = {name for name, _, source, _ in plan if source is None}
    assert fresh == {"output_projection/kernel", "output_projection/bias"}
    used = {source for _, _, source, _ in plan if source}
    assert set(vit) - used == {"cls", "head/kernel", "head/bias", "pre_logits/kernel",
                               "pre_logits/bias"}

