"""MBT model: shapes, parameter counts of the paper's ViT-B/16 MBT, saving, export, configs."""
import numpy as np
import pytest
import keras
import tensorflow as tf

from mbt_keras.config import from_preset
from mbt_keras.drop_path import DropPath
from mbt_keras.model import build_model
from mbt_keras.reports import parameter_breakdown


def random_inputs(config, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"rgb": (batch, config.num_frames, config.image_size, config.image_size, 3),
              "spec": (batch, config.spec_frames, config.mel_bins)}
    return {m: rng.random(shapes[m]).astype("float32") * (1 if m == "rgb" else -10)
            for m in config.modalities}


@pytest.mark.parametrize("overrides, classes", [
    (dict(), 4),
    (dict(head="verb_noun", num_classes=(3, 5)), 8),
    (dict(fusion="cross", classifier="gap", pre_logits_size=8, spec_channels=3,
          rgb_tokenizer="tubelet"), 4),
    (dict(fusion="vanilla", fusion_layer=0), 4),
    (dict(modalities=("spec",)), 4),
    (dict(modalities=("rgb",)), 4),
])
def test_logits_have_one_column_per_class(overrides, classes):
    config = from_preset("mbt-micro", **overrides)
    logits = build_model(config)(random_inputs(config))
    assert logits.shape == (2, classes) and logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))


def test_late_fusion_token_logits_are_the_mean_of_each_modality_classified_alone():
    config = from_preset("mbt-micro", fusion_layer=2, num_classes=(3,))
    model = build_model(config)
    x = random_inputs(config)
    both = model(x).numpy()
    project = model.get_layer("output_projection")
    norm = model.get_layer("encoder_norm")
    cls = [keras.Model(model.inputs, model.get_layer(name).output)(x)[:, 0]
           for name in ("encoderblock_1", "encoderblock_1_spectrogram")]
    expected = np.mean([project(norm(c)).numpy() for c in cls], axis=0)
    np.testing.assert_allclose(both, expected, rtol=1e-5, atol=1e-6)


def test_b16_each_modality_encoder_has_vit_b16_parameter_count():
    # One ViT-B/16 block (d=768, MLP 3072): 2 LayerNorms 2*2*768 = 3,072;
    # q/k/v/out projections 4*(768*768 + 768) = 2,362,368;
    # MLP 768*3072 + 3072 + 3072*768 + 768 = 4,722,432  -> 7,087,872 per block.
    # Encoder: 12 blocks + final LayerNorm 1,536 = 85,056,000 (ViT-B/16 without stem/head).
    vit_b16_encoder = 12 * 7_087_872 + 1_536
    assert vit_b16_encoder == 85_056_000
    # Tokenisers: RGB conv 16*16*3*768 + 768 = 590,592, CLS 768, positions (8*14*14 + 1)*768
    # = 1,204,992; spectrogram conv 16*16*1*768 + 768 = 197,376, CLS 768,
    # positions (50*8 + 1)*768 = 307,968. Bottleneck 4*768; classifier 768*527 + 527.
    parts = parameter_breakdown(build_model(from_preset("mbt-b16")))
    assert parts["rgb_encoder"] == vit_b16_encoder
    assert parts["spec_encoder"] == vit_b16_encoder
    assert parts["rgb_tokeniser"] == 590_592 + 768 + 1_204_992
    assert parts["spec_tokeniser"] == 197_376 + 768 + 307_968
    assert parts["fusion"] == 4 * 768
    assert parts["head"] == 768 * 527 + 527
    assert parts["total"] == 2 * vit_b16_encoder - 1_536 + 1_796_352 + 506_112 + 3_072 + 405_263


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    config = from_preset("mbt-micro", bottleneck_update="mean", pre_logits_size=8,
                         rgb_tokenizer="tubelet", spec_channels=3)
    model = build_model(config)
    x = random_inputs(config)
    path = str(tmp_path / "mbt.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(model(x).numpy(), restored(x).numpy())


def test_saved_model_export_gives_identical_outputs(tmp_path):
    config = from_preset("mbt-micro", fusion="cross")
    model = build_model(config)
    x = random_inputs(config)
    model.export(str(tmp_path / "sm"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    np.testing.assert_allclose(model(x).numpy(), loaded.serve(x).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("overrides, field", [
    (dict(fusion_layer=3), "fusion_layer"),
    (dict(num_bottlenecks=0), "num_bottlenecks"),
    (dict(spec_frames=100), "spec_frames"),
    (dict(fusion="sideways"), "fusion"),
])
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"ModelConfig\.{field}="):
        from_preset("mbt-micro", **overrides)


def test_mixed_bfloat16_and_xla_forward_match_float32():
    config = from_preset("mbt-micro")
    x = random_inputs(config)
    reference = build_model(config)
    jit_logits = tf.function(reference, jit_compile=True)(x)
    np.testing.assert_allclose(jit_logits.numpy(), reference(x).numpy(), rtol=1e-4, atol=1e-4)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = build_model(config)
        assert mixed.get_layer("encoderblock_0").compute_dtype == "bfloat16"
        mixed.set_weights(reference.get_weights())
        logits = tf.function(mixed, jit_compile=True)(x)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert logits.dtype == tf.float32
    np.testing.assert_allclose(logits.numpy(), reference(x).numpy(), atol=0.1)


def test_drop_path_drops_whole_examples_only_in_training():
    layer = DropPath(0.5, seed=1)
    x = np.ones((64, 3, 2), "float32")
    np.testing.assert_array_equal(layer(x, training=False), x)
    y = layer(x, training=True).numpy()
    per_example = y.reshape(64, -1)
    assert set(np.unique(per_example)) == {0.0, 2.0}
    assert np.all(per_example.min(1) == per_example.max(1))
