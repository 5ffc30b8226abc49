"""Export one SavedModel for TF Serving clients and for TFMA.

Clients send what they have (JPEG or uint8 frames, a 16 kHz waveform); the graph does the
resize/crop and runs the one log-mel function (`mbt_keras.log_mel`), so serving cannot drift
from preprocessing. TFMA feeds serialized SequenceExamples to `SIG_EXAMPLES` and reads the
dense labels from `SIG_LABELS`, the name TFMA runs by default as a preprocessing function.

The model's input contract (`mbt_keras.input_contract`) travels with it as an asset and the
no-input `SIG_CONTRACT` signature. The serving signatures refuse what the model cannot use
(`tf.debugging.Assert`, INVALID_ARGUMENT naming the input and index), so the official
`tensorflow_model_server` applies the same checks as ours.
"""
import os
import tempfile

import tensorflow as tf
import tensorflow.experimental.numpy as tnp

from mbt_keras import (augment, contract, input_contract, input_pipeline, strategy, training,
                       windows)
from mbt_keras.config import ModelConfig
from mbt_keras.log_mel import log_mel_spectrogram
from mbt_keras.model import build_model

JPEG_SOI = b"\xff\xd8\xff"  # every JPEG starts with these bytes


class _ExportModule(tf.Module):
    """Holds the Keras model, the class-name table and the signature functions."""

    def __init__(self, model, config: ModelConfig, class_names_file: str, contract_file: str,
                 limits: input_contract.InputLimits, top_k: int, eval_views: int):
        super().__init__()
        # The module tracks the model's tf.Variables, not the Keras model: a tracked Keras 3
        # model saves each weight twice, as its keras.Variable (the copy TF1-style loaders
        # restore) and as the tf.Variable the signatures read (which they never restore), so
        # tensorflow_model_server would answer "Could not find variable" (keras-team/keras
        # #20095). A lambda is not tracked; tests/serving/test_c_loader.py proves the fix.
        self._model = lambda inputs: model(inputs, training=False)
        self.model_variables = [variable.value for variable in model.variables]
        self._config = config
        self._limits = limits
        self.contract_asset = tf.saved_model.Asset(contract_file)
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
        logits = self._model({m: inputs[m] for m in self._config.modalities})
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
        frames_name = contract.IN_FRAMES_JPEG if decode_jpeg else contract.IN_FRAMES_UINT8
        checked = _batch_checks(frames_name, frames_uint8_or_jpeg, waveform)
        frames_uint8_or_jpeg, waveform = (_after(checked, t)
                                          for t in (frames_uint8_or_jpeg, waveform))
        if contract.INPUT_RGB in cfg.modalities:
            frames_uint8_or_jpeg = (
                _checked_jpegs(frames_uint8_or_jpeg, cfg.num_frames, self._limits) if decode_jpeg
                else _checked_uint8(frames_uint8_or_jpeg, self._limits))
        if contract.INPUT_SPEC in cfg.modalities:
            waveform = _checked_waveform(waveform, self._limits)
        inputs = request_model_inputs(cfg, frames_uint8_or_jpeg, waveform, decode_jpeg)
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
        # No inputs: gRPC Predict accepts it on the official server too (docs/serving.md).
        contract_text = tf.function(
            lambda: {contract.OUT_CONTRACT: tf.io.read_file(self.contract_asset.asset_path)},
            input_signature=[])
        return {contract.SIG_SERVING: jpeg.get_concrete_function(),
                contract.SIG_CONTRACT: contract_text.get_concrete_function(),
                contract.SIG_UINT8: uint8.get_concrete_function(),
                contract.SIG_EXAMPLES: examples.get_concrete_function(),
                contract.SIG_LABELS: labels.get_concrete_function()}


def request_model_inputs(config: ModelConfig, frames_uint8_or_jpeg, waveform,
                         decode_jpeg: bool = True) -> dict:
    """The Keras model's inputs {'rgb', 'spec'} for a request's frames (JPEG [B, F] or uint8
    [B, F, H, W, 3]) and waveform [B, S], as the serving signatures compute them once their
    checks passed (`mbt explain` feeds the model the same way)."""
    inputs = {}
    if contract.INPUT_RGB in config.modalities:
        frames = tf.gather(frames_uint8_or_jpeg,
                           uniform_frame_indices(tf.shape(frames_uint8_or_jpeg)[1],
                                                 config.num_frames), axis=1)
        clip_spec = tf.TensorSpec([config.num_frames, config.image_size, config.image_size, 3],
                                  tf.float32)
        decode = ((lambda jpegs: _decoded_jpegs(jpegs, config.image_size)) if decode_jpeg
                  else (lambda clip: _decoded_frames(clip, config.image_size)))
        inputs[contract.INPUT_RGB] = tf.map_fn(decode, frames, fn_output_signature=clip_spec)
    if contract.INPUT_SPEC in config.modalities:
        inputs[contract.INPUT_SPEC] = _spectrogram_window(waveform, config.spec_frames)
    return inputs


def uniform_frame_indices(available, wanted: int) -> tf.Tensor:
    """The window rule (`windows.frame_indices`) in the graph: `available` is the number of
    frames the client sent, known only at run time."""
    return windows.frame_indices(available, wanted, xp=tnp)


def _require(ok, template: str, *values):
    """An assertion that fails the call with INVALID_ARGUMENT and the formatted message."""
    return tf.debugging.Assert(ok, [tf.strings.format(template, list(values))])


def _after(checks, tensor):
    """`tensor`, computed only once every check in `checks` has passed."""
    with tf.control_dependencies(checks):
        return tf.identity(tensor)


def _first(bad):
    """Index of the first True in `bad`, one scalar per axis (zeros when there is none)."""
    flat = tf.argmax(tf.cast(tf.reshape(bad, [-1]), tf.int32), output_type=tf.int32)
    return tf.unstack(tf.unravel_index(flat, tf.shape(bad, out_type=tf.int32)))


def _batch_checks(frames_name: str, frames, waveform):
    """At least one clip, and as many waveforms as clips of frames."""
    clips, waves = tf.shape(frames)[0], tf.shape(waveform)[0]
    return [_require(clips > 0, f"input {frames_name} has batch size 0; send at least one clip"),
            _require(clips == waves, f"inputs {frames_name} and {contract.IN_WAVEFORM} hold "
                     "{} and {} clips; send one waveform per clip", clips, waves)]


def _frame_count_checks(name: str, count, limits):
    return [_require(count > 0, f"input {name} has 0 frames per clip; send at least one"),
            _require(count <= limits.max_frames, f"input {name} has {{}} frames per clip, more "
                     f"than the bound of {limits.max_frames}", count)]


def _image_size_checks(name: str, heights, widths, limits):
    """Every frame's sides within [min_image_side, max_image_side]; heights, widths [B, F]."""
    short, long = tf.minimum(heights, widths), tf.maximum(heights, widths)
    small, large = short < limits.min_image_side, long > limits.max_image_side
    checks = []
    for bad, why in ((small, f"the model needs at least {limits.min_image_side} px on the short "
                             "side (it centre-crops and resizes it)"),
                     (large, f"larger than the bound of {limits.max_image_side} px per side")):
        clip, frame = _first(bad)
        checks.append(_require(~tf.reduce_any(bad), f"input {name}[{{}}, {{}}]: image is {{}}x{{}} "
                               f"px; {why}", clip, frame, widths[clip, frame],
                               heights[clip, frame]))
    return checks


def _checked_jpegs(frames, num_frames: int, limits):
    """JPEG frames [B, F] once every frame passed the checks, not only the sampled ones:
    JPEG marker, size from the header, and (when some frames are not sampled) a cheap 1/8
    scale decode so a damaged frame fails the request wherever it is."""
    name = contract.IN_FRAMES_JPEG
    frames = _after(_frame_count_checks(name, tf.shape(frames)[1], limits), frames)
    not_jpeg = tf.not_equal(tf.strings.substr(frames, 0, len(JPEG_SOI)), JPEG_SOI)
    clip, frame = _first(not_jpeg)
    frames = _after([_require(~tf.reduce_any(not_jpeg), f"input {name}[{{}}, {{}}]: not a JPEG "
                              "image (no JPEG start marker)", clip, frame)], frames)
    dims = tf.map_fn(tf.image.extract_jpeg_shape, tf.reshape(frames, [-1]),
                     fn_output_signature=tf.TensorSpec([3], tf.int32))
    dims = tf.reshape(dims, tf.concat([tf.shape(frames), [3]], 0))
    frames = _after(_image_size_checks(name, dims[..., 0], dims[..., 1], limits), frames)
    every_frame_sampled = tf.shape(frames)[1] <= num_frames
    decodable = tf.cond(every_frame_sampled, lambda: tf.constant(True), lambda: tf.reduce_all(
        tf.map_fn(lambda jpeg: tf.size(tf.io.decode_jpeg(jpeg, channels=3, ratio=8)) > 0,
                  tf.reshape(frames, [-1]), fn_output_signature=tf.bool)))
    return _after([decodable], frames)


def _checked_uint8(frames, limits):
    """uint8 frames [B, F, H, W, 3] within the frame-count and image-size bounds."""
    name = contract.IN_FRAMES_UINT8
    shape = tf.shape(frames)
    frames = _after(_frame_count_checks(name, shape[1], limits), frames)
    return _after(_image_size_checks(name, tf.fill(shape[:2], shape[2]),
                                     tf.fill(shape[:2], shape[3]), limits), frames)


def _checked_waveform(waveform, limits):
    """waveform [B, S] once it covers the model's window, stays within the sample bound and
    holds finite values within [-waveform_limit, waveform_limit]."""
    name, samples = contract.IN_WAVEFORM, tf.shape(waveform)[1]
    need = limits.min_samples
    waveform = _after([
        _require(samples >= need, f"input {name} has {{}} samples per clip; the model needs "
                 f"at least {need} ({need / contract.SAMPLE_RATE:g} s at {contract.SAMPLE_RATE} "
                 "Hz), its window", samples),
        _require(samples <= limits.max_samples, f"input {name} has {{}} samples per clip, more "
                 f"than the bound of {limits.max_samples}", samples)], waveform)
    waveform = _after([_value_check(name, ~tf.math.is_finite(waveform), waveform,
                                    "is not finite")], waveform)
    limit = limits.waveform_limit
    return _after([_value_check(name, tf.abs(waveform) > limit, waveform,
                                f"is outside [-{limit:g}, {limit:g}]; send float PCM in [-1, 1]")],
                  waveform)


def _value_check(name: str, bad, values, why: str):
    """Refuse `values` [B, S] when `bad` holds anywhere, naming the first such value."""
    clip, index = _first(bad)
    return _require(~tf.reduce_any(bad), f"input {name}[{{}}, {{}}]: value {{}} {why}", clip, index,
                    values[clip, index])


def _decoded_jpegs(jpegs, image_size: int):
    """`input_pipeline.decode_frames` of one clip's sampled JPEGs [F], each with its own centre
    crop (`augment.centre_crop_window`), so frames of different sizes in one clip are fine;
    equal-sized frames get the evaluation's crop exactly."""
    return tf.map_fn(lambda jpeg: input_pipeline.decode_frames(
        jpeg[tf.newaxis], augment.centre_crop_window(jpeg), image_size)[0], jpegs,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def _decoded_frames(frames, image_size: int):
    """`input_pipeline.decode_frames` for frames already decoded: uint8 [F, H, W, 3] ->
    the same centre crop (`augment.centre_crop_window`) and resize, float32 in [0, 1]."""
    height, width = tf.shape(frames)[1], tf.shape(frames)[2]
    side = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) *
                   contract.CENTRE_CROP_FRACTION,
                   tf.int32)
    top, left = (height - side) // 2, (width - side) // 2
    crop = frames[:, top:top + side, left:left + side]
    resized = tf.image.resize(tf.cast(crop, tf.float32) / 255.0, [image_size, image_size])
    return tf.clip_by_value(resized, 0.0, 1.0)


def _spectrogram_window(waveform: tf.Tensor, spec_frames: int) -> tf.Tensor:
    """The log-mel of the first `spec_frames` hops (the signature refuses shorter audio)."""
    waveform = waveform[:, :spec_frames * contract.HOP_SAMPLES]
    spec = log_mel_spectrogram(waveform)[:, :spec_frames]
    return tf.ensure_shape(spec, [None, spec_frames, contract.MEL_BINS])


def float32_model(model, config: ModelConfig):
    """`model`, or where it computes in a lower precision (bfloat16 after TPU training,
    float16) a float32 copy built from `config` with its trained weights: serving and TFMA
    run on CPUs, where bfloat16 is slow, and must give the float32 model's scores."""
    if model.dtype_policy.compute_dtype == "float32":
        return model
    with strategy.kept_dtype_policy("float32"):
        copy = build_model(config)
    copy.set_weights(model.get_weights())
    return copy


def export_saved_model(model, config: ModelConfig, class_names, export_dir: str, *,
                       top_k: int = contract.OUT_TOP_K, eval_views: int = 1,
                       fps: float = contract.FPS, preset: str = None) -> str:
    """Write the SavedModel with the signatures of `mbt_keras.contract`; returns `export_dir`.

    `eval_views` is the number of windows the examples signature averages per clip; pass the
    trainer's evaluation `views` so TFMA and the trainer score clips the same way. `fps` (the
    rate the training frames were stored at) and `preset` (found from `config` when None) go
    into the input contract. The SavedModel computes in float32 whatever precision `model`
    trained in (float32_model).
    """
    class_names = list(class_names)
    if len(class_names) != sum(config.num_classes):
        raise ValueError(f"got {len(class_names)} class names for num_classes={config.num_classes}")
    bad = [n for n in class_names if not n or "\n" in n or "\r" in n]
    if bad:
        raise ValueError(f"class names must be non-empty single lines, got {bad[:3]!r}")
    model_contract = input_contract.for_model(config, class_names, fps=fps, preset=preset)
    with tempfile.TemporaryDirectory() as tmp:
        names_file = os.path.join(tmp, contract.CLASS_NAMES_ASSET)
        with open(names_file, "w", encoding="utf-8") as f:
            f.write("\n".join(class_names) + "\n")
        contract_file = os.path.join(tmp, contract.CONTRACT_ASSET)
        with open(contract_file, "w", encoding="utf-8") as f:
            f.write(model_contract.to_json())
        module = _ExportModule(float32_model(model, config), config, names_file, contract_file,
                               model_contract.limits, top_k, eval_views)
        tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir
