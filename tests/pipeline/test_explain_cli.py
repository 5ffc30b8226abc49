"""`mbt explain`: attention maps of real videos through an exported mbt-micro model's own
weights, found from a pushed version, a serving model folder or a Trainer's artifact."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from pipeline.cli import main
from serving.client import predict_saved_model, read_window
from tests.serving.conftest import CLASS_NAMES, CLIP, export_micro


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """<serving base>/mbt with versions 1 and 2 (different weights), as the Pusher leaves it."""
    base = tmp_path_factory.mktemp("serving")
    for version in (1, 2):
        export_micro(str(base / "mbt" / str(version)), seed=version)
    return str(base / "mbt")


def test_explain_writes_one_png_per_video_with_the_models_own_scores(pushed, tmp_path, capsys):
    from mbt_keras import attention_rollout
    from mbt_keras.contract import IN_FRAMES_JPEG, IN_WAVEFORM, OUT_SCORES
    from mbt_keras.export import request_model_inputs

    second = str(tmp_path / "second clip.mp4")
    shutil.copy(CLIP, second)
    out = str(tmp_path / "maps")
    assert main(["explain", CLIP, second, "--saved-model", pushed, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert f"model: {os.path.join(pushed, '2')}" in printed  # the newest version
    for video in (CLIP, second):
        png = os.path.join(out, os.path.splitext(os.path.basename(video))[0] + ".png")
        image = tf.io.decode_png(open(png, "rb").read(), channels=3).numpy()
        assert image.shape == (420, 840, 3)  # two panels: middle frame, spectrogram
        assert image.std() > 10
        assert f"{png}: predicted " in printed
    assert "rollout mass: rgb " in printed and "spec " in printed and "fsn " in printed

    # The attention graph computes the exported model: same scores as its serving signature.
    saved = os.path.join(pushed, "2")
    model, config, model_contract = attention_rollout.exported_attention_model(saved)
    window = read_window(CLIP, num_frames=model_contract.num_frames,
                         seconds=model_contract.window_seconds)
    inputs = request_model_inputs(
        config, tf.constant(window.inputs[IN_FRAMES_JPEG].tolist(), tf.string),
        tf.constant(window.inputs[IN_WAVEFORM]))
    logits = np.asarray(model(inputs, training=False)["logits"])
    expected = predict_saved_model(saved, window.inputs)[OUT_SCORES]
    np.testing.assert_allclose(tf.sigmoid(logits), expected, atol=1e-5)
    assert model_contract.class_names == tuple(CLASS_NAMES)


def test_explain_takes_a_trainer_model_artifact(pushed, tmp_path, capsys):
    artifact = tmp_path / "Trainer" / "model" / "7"
    shutil.copytree(os.path.join(pushed, "1"), artifact / "Format-Serving")
    out = str(tmp_path / "maps")
    assert main(["explain", CLIP, "--saved-model", str(tmp_path), "--out", out]) == 0
    assert f"model: {artifact / 'Format-Serving'}" in capsys.readouterr().out
    assert os.listdir(out) == ["bigbuckbunny_5s.png"]


def test_explain_without_a_model_is_one_line_naming_the_folder(tmp_path, capsys):
    assert main(["explain", CLIP, "--saved-model", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mbt explain: error: --saved-model {tmp_path}: no exported model there "
                   "(a pushed version, a serving model folder, a Trainer's model artifact or a "
                   "pipeline root)")


def test_explain_of_a_missing_video_names_it(pushed, tmp_path, capsys):
    missing = str(tmp_path / "nope.mp4")
    assert main(["explain", missing, "--saved-model", pushed]) == 2
    assert capsys.readouterr().err.strip() == f"mbt explain: error: VIDEO {missing}: no such file"
