"""The exported signatures compute what the trainer's evaluation computes."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from mbt_keras import contract, input_pipeline, training
from mbt_keras.config import from_preset
from mbt_keras.export import export_saved_model, uniform_frame_indices
from mbt_keras.model import build_model
from tests.mbt_keras.tfrecord_fixtures import write_clips

CONFIG = from_preset("mbt-micro")
NAMES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = build_model(CONFIG)
    path = export_saved_model(model, CONFIG, NAMES, str(tmp_path_factory.mktemp("export") / "1"))
    return model, tf.saved_model.load(path).signatures


def test_examples_signature_scores_and_labels_match_the_trainer_evaluation(exported, tmp_path):
    model, signatures = exported
    path = write_clips(tmp_path / "eval.tfrecord.gz", 5, 4, seconds=2.0, labels_per_clip=2)
    inputs, labels = next(iter(input_pipeline.eval_dataset(path, CONFIG, batch_size=5, views=1)))
    logits = model({k: v[:, 0] for k, v in inputs.items()}, training=False)[:, tf.newaxis]
    expected, _ = training.scores_and_labels(CONFIG, logits, labels)
    serialized = tf.constant(list(tf.data.TFRecordDataset(path, compression_type="GZIP")
                                  .as_numpy_iterator()))
    scores = signatures[contract.SIG_EXAMPLES](examples=serialized)[contract.OUT_SCORES]
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    dense = signatures[contract.SIG_LABELS](examples=serialized)[contract.LABEL_KEY]
    np.testing.assert_array_equal(dense, labels)
    assert dense.numpy().sum(axis=1).min() >= 1


def test_serving_picks_num_frames_at_a_stride_and_windows_the_audio(exported):
    _, signatures = exported
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1, 6, 40, 60, 3), dtype=np.uint8)
    audio = rng.uniform(-0.5, 0.5, (1, 20000)).astype(np.float32)
    window = CONFIG.spec_frames * contract.HOP_SAMPLES
    serve = signatures[contract.SIG_UINT8]

    def scores(f, w):
        return serve(frames_uint8=tf.constant(f), waveform=tf.constant(w))[contract.OUT_SCORES]

    picked = frames[:, uniform_frame_indices(6, CONFIG.num_frames).numpy()]
    assert uniform_frame_indices(6, CONFIG.num_frames).numpy().tolist() == [0, 3]
    np.testing.assert_allclose(scores(frames, audio), scores(picked, audio), atol=1e-6)
    np.testing.assert_allclose(scores(frames, audio), scores(frames, audio[:, :window]), atol=1e-6)
    assert not np.allclose(scores(frames, audio), scores(frames, audio[:, ::-1]), atol=1e-4)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f"input waveform has 5000 samples per clip; the model needs at "
                             f"least {window}"):
        scores(frames, audio[:, :5000])  # no silent padding: the client sends a whole window


def test_top_k_names_come_from_the_asset_in_score_order(exported):
    _, signatures = exported
    jpegs = [[tf.io.encode_jpeg(np.full((30, 40, 3), 90 * i, np.uint8)).numpy() for i in range(3)]]
    out = signatures[contract.SIG_SERVING](frames=tf.constant(jpegs),
                                           waveform=tf.zeros([1, 16000]))
    order = np.argsort(-out[contract.OUT_SCORES].numpy()[0], kind="stable")
    assert [n.decode() for n in out[contract.OUT_TOP_K_NAMES].numpy()[0]] == [NAMES[i] for i in order]
    np.testing.assert_allclose(out[contract.OUT_TOP_K_SCORES].numpy()[0],
                               out[contract.OUT_SCORES].numpy()[0][order], atol=1e-7)


def test_undecodable_jpeg_is_an_invalid_argument(exported):
    _, signatures = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match="(?i)jpeg"):
        signatures[contract.SIG_SERVING](frames=tf.constant([[b"not a jpeg"]]),
                                         waveform=tf.zeros([1, 16000]))


def test_class_names_must_match_the_heads(tmp_path):
    with pytest.raises(ValueError, match="got 3 class names for num_classes=\\(4,\\)"):
        export_saved_model(None, CONFIG, NAMES[:3], str(tmp_path))
    with pytest.raises(ValueError, match="single lines"):
        export_saved_model(None, CONFIG, ["a", "b\nc", "d", "e"], str(tmp_path))
