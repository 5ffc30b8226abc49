"""Export one SavedModel for TF Serving clients and for TFMA.

Clients send what they have (JPEG or uint8 frames, a 16 kHz waveform); the graph does the
resize/crop and runs the one log-mel function (`mbt_keras.log_mel`), so serving cannot drift
from preprocessing. TFMA feeds serialized SequenceExamples to `SIG_EXAMPLES` and reads the
dense labels from `SIG_LABELS`, the name TFMA runs by default as a preprocessing function.
"""
import os
import tempfile

import tensorflow as tf

from mbt_keras import contract
from mbt_keras.config import ModelConfig
from mbt_keras.input_pipeline import parse_eval_examples
from mbt_keras.log_mel import log_mel_spectrogram
from mbt_keras.frames import resize_and_centre_crop, uniform_frame_indices


def scores_from_logits(logits: tf.Tensor, config: ModelConfig) -> tf.Tensor:
    """Sigmoid per class (multi-label), softmax (single-label) or softmax per head (verb+noun)."""
    if config.head == "multilabel":
        return tf.sigmoid(logits)
    if config.head == "singlelabel":
        return tf.nn.softmax(logits, axis=-1)
    heads = tf.split(logits, list(config.num_classes), axis=-1)
    return tf.concat([tf.nn.softmax(h, axis=-1) for h in heads], axis=-1)


class _ExportModule(tf.Module):
    """Holds the Keras model, the class-name table and the signature functions."""

    def __init__(self, model, config: ModelConfig, class_names_file: str, top_k: int):
        super().__init__()
        self.model = model
        self._config = config
        self._top_k = min(top_k, sum(config.num_classes))
        self.class_names_asset = tf.saved_model.Asset(class_names_file)
        self.class_names = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.class_names_asset, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
            default_value="")

    def _scores(self, inputs):
        model_inputs = {m: inputs[m] for m in self._config.modalities}
        return scores_from_logits(self.model(model_inputs, training=False), self._config)

    def _predict(self, frames_uint8_or_jpeg, waveform, decode_jpeg: bool):
        cfg = self._config
        inputs = {}
        if contract.INPUT_RGB in cfg.modalities:
            frames = tf.gather(frames_uint8_or_jpeg,
                               uniform_frame_indices(tf.shape(frames_uint8_or_jpeg)[1], cfg.num_frames),
                               axis=1)
            if decode_jpeg:
                flat = tf.reshape(frames, [-1])
                images = tf.map_fn(
                    lambda jpeg: resize_and_centre_crop(
                        tf.io.decode_jpeg(jpeg, channels=3)[tf.newaxis], cfg.image_size)[0],
                    flat, fn_output_signature=tf.TensorSpec([cfg.image_size, cfg.image_size, 3],
                                                            tf.float32))
                rgb = tf.reshape(images, [-1, cfg.num_frames, cfg.image_size, cfg.image_size, 3])
            else:
                shape = tf.shape(frames)
                images = tf.reshape(frames, tf.concat([[-1], shape[2:]], 0))
                rgb = tf.reshape(resize_and_centre_crop(images, cfg.image_size),
                                 [-1, cfg.num_frames, cfg.image_size, cfg.image_size, 3])
            inputs[contract.INPUT_RGB] = rgb
        if contract.INPUT_SPEC in cfg.modalities:
            inputs[contract.INPUT_SPEC] = _spectrogram_window(waveform, cfg.spec_frames)
        scores = self._scores(inputs)
        top_scores, top_indices = tf.math.top_k(scores, k=self._top_k)
        return {
            contract.OUT_SCORES: scores,
            contract.OUT_TOP_K_NAMES: self.class_names.lookup(tf.cast(top_indices, tf.int64)),
            contract.OUT_TOP_K_SCORES: top_scores,
        }

    def signatures(self):
        jpeg = tf.function(
            lambda frames, waveform: self._predict(frames, waveform, decode_jpeg=True),
            input_signature=[tf.TensorSpec([None, None], tf.string, name=contract.IN_FRAMES_JPEG),
                             tf.TensorSpec([None, None], tf.float32, name=contract.IN_WAVEFORM)])
        uint8 = tf.function(
            lambda frames, waveform: self._predict(frames, waveform, decode_jpeg=False),
            input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.uint8,
                                           name=contract.IN_FRAMES_UINT8),
                             tf.TensorSpec([None, None], tf.float32, name=contract.IN_WAVEFORM)])
        examples_spec = [tf.TensorSpec([None], tf.string, name=contract.IN_EXAMPLES)]
        examples = tf.function(
            lambda serialized: {contract.OUT_SCORES: self._scores(
                parse_eval_examples(serialized, self._config)[0])},
            input_signature=examples_spec)
        labels = tf.function(
            lambda serialized: {contract.LABEL_KEY: parse_eval_examples(serialized, self._config)[1]},
            input_signature=examples_spec)
        return {contract.SIG_SERVING: jpeg.get_concrete_function(),
                contract.SIG_UINT8: uint8.get_concrete_function(),
                contract.SIG_EXAMPLES: examples.get_concrete_function(),
                contract.SIG_LABELS: labels.get_concrete_function()}


def _spectrogram_window(waveform: tf.Tensor, spec_frames: int) -> tf.Tensor:
    """The log-mel of the first `spec_frames` hops; a short waveform is padded with silence."""
    samples = spec_frames * contract.HOP_SAMPLES
    waveform = waveform[:, :samples]
    waveform = tf.pad(waveform, [[0, 0], [0, samples - tf.shape(waveform)[1]]])
    spec = log_mel_spectrogram(waveform)[:, :spec_frames]
    return tf.ensure_shape(spec, [None, spec_frames, contract.MEL_BINS])


def export_saved_model(model, config: ModelConfig, class_names, export_dir: str, *,
                       top_k: int = contract.OUT_TOP_K) -> str:
    """Write the SavedModel with the signatures of `mbt_keras.contract`; returns `export_dir`."""
    class_names = list(class_names)
    if len(class_names) != sum(config.num_classes):
        raise ValueError(f"got {len(class_names)} class names for num_classes={config.num_classes}")
    bad = [n for n in class_names if not n or "\n" in n or "\r" in n]
    if bad:
        raise ValueError(f"class names must be non-empty single lines, got {bad[:3]!r}")
    with tempfile.TemporaryDirectory() as tmp:
        names_file = os.path.join(tmp, contract.CLASS_NAMES_ASSET)
        with open(names_file, "w", encoding="utf-8") as f:
            f.write("\n".join(class_names) + "\n")
        module = _ExportModule(model, config, names_file, top_k)
        tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir
