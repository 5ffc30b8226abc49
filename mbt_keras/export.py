"""Export one SavedModel for TF Serving clients and for TFMA.

Clients send what they have (JPEG or uint8 frames, a 16 kHz waveform); the graph does the
resize/crop and runs the one log-mel function (`mbt_keras.log_mel`), so serving cannot drift
from preprocessing. TFMA feeds serialized SequenceExamples to `SIG_EXAMPLES` and reads the
dense labels from `SIG_LABELS`, the name TFMA runs by default as a preprocessing function.
"""
import os
import tempfile

import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from mbt_keras import augment, contract, input_pipeline, training, windows
from mbt_keras.config import ModelConfig
from mbt_keras.log_mel import log_mel_spectrogram


class _ExportModule(tf.Module):
    """Holds the Keras model, the class-name table and the signature functions."""

    def __init__(self, model, config: ModelConfig, class_names_file: str, top_k: int,
                 eval_views: int):
        super().__init__()
        self.model = model
        self._config = config
        self._eval_views = eval_views
        shapes = {contract.INPUT_RGB: [config.num_frames, config.image_size, config.image_size, 3],
                  contract.INPUT_SPEC: [config.spec_frames, config.mel_bins]}
        self._eval_signature = (
            {m: tf.TensorSpec([eval_views] + shapes[m], tf.float32) for m in config.modalities},
            tf.TensorSpec([sum(config.num_classes)], tf.float32))
        self._top_k = min(top_k, sum(config.num_classes))
        self.class_names_asset = tf.saved_model.Asset(class_names_file)
        self.class_names = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.class_names_asset, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
            default_value="")

    def _scores(self, inputs, views: int = 1):
        """Scores as the trainer's evaluation computes them: logits averaged over `views`
        consecutive rows, then sigmoid (multi-label) or softmax per head."""
        logits = self.model({m: inputs[m] for m in self._config.modalities}, training=False)
        logits = tf.reshape(logits, [-1, views, sum(self._config.num_classes)])
        return training.scores_and_labels(self._config, logits, None)[0]

    def _example_scores(self, serialized):
        """Scores of serialized SequenceExamples under the trainer's evaluation protocol.

        The windows, centre crop and view averaging are `input_pipeline`'s, so TFMA's metrics
        are computed on exactly what the trainer's evaluation sees.
        """
        cfg, views = self._config, self._eval_views
        inputs, _ = tf.map_fn(lambda s: input_pipeline.eval_example(s, cfg, views), serialized,
                              fn_output_signature=self._eval_signature)
        flat = {k: tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0)) for k, v in inputs.items()}
        return self._scores(flat, views)

    def _example_labels(self, serialized):
        """Dense labels [B, C] (multi-hot, one-hot, or verb then noun one-hot) for TFMA."""
        return tf.map_fn(
            lambda s: input_pipeline.label_vector(input_pipeline.parse(s, self._config)["labels"],
                                                  self._config),
            serialized, fn_output_signature=tf.TensorSpec([sum(self._config.num_classes)],
                                                          tf.float32))

    def _predict(self, frames_uint8_or_jpeg, waveform, decode_jpeg: bool):
        cfg = self._config
        inputs = {}
        if contract.INPUT_RGB in cfg.modalities:
            frames = tf.gather(frames_uint8_or_jpeg,
                               uniform_frame_indices(tf.shape(frames_uint8_or_jpeg)[1], cfg.num_frames),
                               axis=1)
            clip_spec = tf.TensorSpec([cfg.num_frames, cfg.image_size, cfg.image_size, 3],
                                      tf.float32)
            if decode_jpeg:
                # The evaluation code itself: one centre crop per clip, from its first frame.
                rgb = tf.map_fn(lambda jpegs: input_pipeline.decode_frames(
                    jpegs, augment.centre_crop_window(jpegs[0]), cfg.image_size),
                    frames, fn_output_signature=clip_spec)
            else:
                rgb = tf.map_fn(lambda clip: _decoded_frames(clip, cfg.image_size), frames,
                                fn_output_signature=clip_spec)
            inputs[contract.INPUT_RGB] = rgb
        if contract.INPUT_SPEC in cfg.modalities:
            inputs[contract.INPUT_SPEC] = _spectrogram_window(waveform, cfg.spec_frames)
        scores = self._scores(inputs)
        # verb_noun: one ranking over verbs and nouns together, each scored by its own softmax.
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
        examples = tf.function(lambda examples: {contract.OUT_SCORES: self._example_scores(examples)},
                               input_signature=examples_spec)
        labels = tf.function(lambda examples: {contract.LABEL_KEY: self._example_labels(examples)},
                             input_signature=examples_spec)
        return {contract.SIG_SERVING: jpeg.get_concrete_function(),
                contract.SIG_UINT8: uint8.get_concrete_function(),
                contract.SIG_EXAMPLES: examples.get_concrete_function(),
                contract.SIG_LABELS: labels.get_concrete_function()}


def uniform_frame_indices(available, wanted: int) -> tf.Tensor:
    """The window rule (`windows.frame_indices`) in the graph: `available` is the number of
    frames the client sent, known only at run time."""
    return windows.frame_indices(available, wanted, xp=tnp)


def _decoded_frames(frames, image_size: int):
    """`input_pipeline.decode_frames` for frames already decoded: uint8 [F, H, W, 3] ->
    the same centre crop (`augment.centre_crop_window`) and resize, float32 in [0, 1]."""
    height, width = tf.shape(frames)[1], tf.shape(frames)[2]
    side = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * augment.CENTRE_CROP_FRACTION,
                   tf.int32)
    top, left = (height - side) // 2, (width - side) // 2
    crop = frames[:, top:top + side, left:left + side]
    resized = tf.image.resize(tf.cast(crop, tf.float32) / 255.0, [image_size, image_size])
    return tf.clip_by_value(resized, 0.0, 1.0)


def _spectrogram_window(waveform: tf.Tensor, spec_frames: int) -> tf.Tensor:
    """The log-mel of the first `spec_frames` hops; a short waveform is padded with silence."""
    samples = spec_frames * contract.HOP_SAMPLES
    waveform = waveform[:, :samples]
    waveform = tf.pad(waveform, [[0, 0], [0, samples - tf.shape(waveform)[1]]])
    spec = log_mel_spectrogram(waveform)[:, :spec_frames]
    return tf.ensure_shape(spec, [None, spec_frames, contract.MEL_BINS])


def export_saved_model(model, config: ModelConfig, class_names, export_dir: str, *,
                       top_k: int = contract.OUT_TOP_K, eval_views: int = 1) -> str:
    """Write the SavedModel with the signatures of `mbt_keras.contract`; returns `export_dir`.

    `eval_views` is the number of windows the examples signature averages per clip; pass the
    trainer's evaluation `views` so TFMA and the trainer score clips the same way.
    """
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
        module = _ExportModule(model, config, names_file, top_k, eval_views)
        tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir
