"""Stochastic depth with timm's rescaling (our default) and without it (Scenic's MBT)."""
import keras
import numpy as np
import pytest

from mbt_keras.config import PRESETS, from_preset
from mbt_keras.drop_path import DropPath
from mbt_keras.model import build_model
from mbt_keras.transformer_block import TransformerBlock

N = 20000


@pytest.mark.parametrize("rescale,kept_value,expected_mean", [(True, 1 / 0.7, 1.0),
                                                               (False, 1.0, 0.7)])
def test_training_branch_mean_is_one_with_rescale_and_keep_rate_without(rescale, kept_value,
                                                                        expected_mean):
    layer = DropPath(0.3, seed=4, rescale=rescale)
    x = np.ones((N, 2, 3), "float32")
    y = layer(x, training=True).numpy().reshape(N, -1)
    np.testing.assert_allclose(np.unique(y), [0.0, kept_value], rtol=1e-6)
    # Bernoulli(0.7) mean over 20000 examples: standard error 0.0032 (times kept_value).
    assert abs(y[:, 0].mean() - expected_mean) < 0.02
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_scenic_preset_trains_without_rescale_and_the_others_with_it():
    assert from_preset("mbt-b16x2-scenic").stochastic_depth_rescale is False
    assert all(from_preset(name).stochastic_depth_rescale for name in PRESETS
               if name != "mbt-b16x2-scenic")


def test_rescale_choice_survives_keras_saving_and_leaves_inference_unchanged(tmp_path):
    scenic_like = build_model(from_preset("mbt-micro", drop_path=0.5, stochastic_depth_rescale=False))
    timm_like = build_model(from_preset("mbt-micro", drop_path=0.5))
    timm_like.set_weights(scenic_like.get_weights())
    path = tmp_path / "scenic_like.keras"
    scenic_like.save(path)
    loaded = keras.models.load_model(path)
    blocks = [layer for layer in loaded.layers if isinstance(layer, TransformerBlock)]
    assert blocks and all(not b.drop_path_rescale and not b.drop_branch.rescale for b in blocks)
    assert blocks[-1].drop_branch.rate == 0.5
    rng = np.random.default_rng(0)
    x = {"rgb": rng.uniform(size=(2, 2, 32, 32, 3)).astype("float32"),
         "spec": rng.normal(size=(2, 96, 128)).astype("float32")}
    expected = timm_like(x, training=False).numpy()
    np.testing.assert_allclose(loaded(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert from_preset("mbt-micro", stochastic_depth_rescale=False).to_dict()[
        "stochastic_depth_rescale"] is False
