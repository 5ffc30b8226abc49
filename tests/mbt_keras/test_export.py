"""The exported signatures compute what the trainer's evaluation computes."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from mbt_keras import contract, input_pipeline, strategy, training
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


def _graph_nodes(export_dir):
    """Every node of the SavedModel's graph, those of the functions its signatures call too."""
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        [meta_graph] = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs
    graph = meta_graph.graph_def
    return list(graph.node) + [n for f in graph.library.function for n in f.node_def]


def _dtypes(node):
    return {a.type for a in node.attr.values()} | {t for a in node.attr.values()
                                                   for t in a.list.type}


def test_a_model_trained_in_bfloat16_exports_a_float32_graph_with_its_trained_weights(tmp_path):
    """After TPU training (mixed_bfloat16) serving and TFMA run on CPUs: the export computes
    in float32 and scores as the float32 model with the trained weights does, and the
    process's dtype policy is left as it was."""
    keras.utils.set_random_seed(4)
    with strategy.kept_dtype_policy("mixed_bfloat16"):
        model = build_model(CONFIG)
    assert keras.mixed_precision.global_policy().name == "float32"
    path = write_clips(tmp_path / "eval.tfrecord.gz", 4, 4, seconds=2.0)
    inputs, labels = next(iter(input_pipeline.eval_dataset(path, CONFIG, batch_size=4, views=1)))
    inputs = {k: v[:, 0] for k, v in inputs.items()}
    initial = model.get_weights()
    optimizer = keras.optimizers.SGD(1.0)
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(training.training_loss(labels, model(inputs, training=True),
                                                         CONFIG))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables))
    assert any(not np.array_equal(a, b) for a, b in zip(initial, model.get_weights()))

    export_dir = export_saved_model(model, CONFIG, NAMES, str(tmp_path / "1"))
    assert keras.mixed_precision.global_policy().name == "float32"
    nodes = _graph_nodes(export_dir)
    assert not [n.name for n in nodes if tf.bfloat16.as_datatype_enum in _dtypes(n)]
    matmuls = [n for n in nodes if n.op in ("MatMul", "BatchMatMulV2", "Einsum")]
    assert matmuls and {n.attr["T"].type for n in matmuls} == {tf.float32.as_datatype_enum}

    float32 = build_model(CONFIG)
    float32.set_weights(model.get_weights())
    expected, _ = training.scores_and_labels(CONFIG, float32(inputs)[:, tf.newaxis], labels)
    serialized = tf.constant(list(tf.data.TFRecordDataset(path, compression_type="GZIP")
                                  .as_numpy_iterator()))
    scores = tf.saved_model.load(export_dir).signatures[contract.SIG_EXAMPLES](
        examples=serialized)[contract.OUT_SCORES]
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    in_bfloat16, _ = training.scores_and_labels(CONFIG, model(inputs)[:, tf.newaxis], labels)
    assert not np.allclose(in_bfloat16, expected, atol=1e-4)  # the two can be told apart


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
