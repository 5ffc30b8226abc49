"""tf.data input pipeline from the preprocessed TFRecords (paper section 4.2).

Training: one random window of t = spec_frames / 100 seconds per clip; num_frames
RGB frames at a uniform stride of t * fps / num_frames over the window (the
stride follows each clip's stored fps) and the matching spec_frames log-mel
frames. Windows are synchronous across modalities by default; asynchronous
sampling draws one window per modality. Only the selected JPEGs are decoded,
and only their crop. Evaluation: `views` uniformly spaced windows per clip with
a centre crop; the trainer averages the logits over the views.

Clips shorter than the window are looped (indices wrap around; the window rule of
`windows.window_indices`, which the serving side applies too), so every clip yields a full
window. Everything runs as TensorFlow ops in parallel maps.
"""
import re

import tensorflow as tf
import tensorflow.experimental.numpy as tnp
from google.protobuf import message

from mbt_keras import augment, contract, host_memory, windows
from mbt_keras.config import ModelConfig
from mbt_keras.user_error import BAD_RECORD, BAD_RECORD_ADVICE, UserError

AUTOTUNE = tf.data.AUTOTUNE
SAMPLINGS = ("sync", "async")
# Where a training batch's flip, colour jitter and mixup are applied (augment.apply_plan):
# "host" in tf.data, "step" in the training step on the accelerator (the batch then comes
# with its plan: (inputs, labels, plan)).
AUGMENT_PLACES = ("host", "step")


def list_files(patterns):
    """Sorted files matching one glob or a list of globs / paths; errors when none match."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise FileNotFoundError(f"no TFRecord files match {patterns}")
    return files


def compression_type(filename):
    """The compression of a record file by its name, the rule TFX's readers apply: "GZIP"
    for a `.gz` file, else "" (uncompressed). Takes a str or a scalar string tensor."""
    if isinstance(filename, str):
        return "GZIP" if filename.endswith(contract.GZIP_SUFFIX) else ""
    gzip = tf.strings.regex_full_match(filename, ".*" + re.escape(contract.GZIP_SUFFIX))
    return tf.where(gzip, "GZIP", "")


def read_tfrecords(filename):
    """A TFRecordDataset of one file, GZIP or not by its name."""
    return tf.data.TFRecordDataset(filename, compression_type=compression_type(filename))


def check_records(patterns) -> None:
    """Raises UserError naming the file when the first matching file does not read as
    (plain or GZIP) TFRecords of SequenceExamples, e.g. a text file passed as --data, before
    a model is built; FileNotFoundError when nothing matches."""
    first = list_files(patterns)[0]
    try:
        record = next(iter(read_tfrecords(first).take(1)), None)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        raise UserError(f"{first} is not a TFRecord file: its first record does not "
                        f"read ({type(error).__name__})") from None
    try:
        if record is not None:
            tf.train.SequenceExample.FromString(record.numpy())
    except message.DecodeError:
        raise UserError(f"{first} holds TFRecords but its first record is no "
                        "tf.train.SequenceExample (docs/data_format.md)") from None


def _all_records(patterns):
    """Every record of the matching files, in file order."""
    return tf.data.Dataset.from_tensor_slices(list_files(patterns)).flat_map(read_tfrecords)


def _records(patterns, input_context, shuffle: bool, seed=None):
    """TFRecords (plain or GZIP) read in parallel, sharded per input pipeline (one per worker).

    With at least one file per pipeline, files are sharded and may be read in any
    order. With fewer, records are sharded, which needs the same record order on
    every worker: files are then read in a fixed order (the example shuffle buffer
    still mixes them).
    """
    files = list_files(patterns)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    shards = input_context.num_input_pipelines if input_context else 1
    shard_records = shards > 1 and len(files) < shards
    if shards > 1 and not shard_records:
        dataset = dataset.shard(shards, input_context.input_pipeline_id)
    any_order = shuffle and not shard_records
    if any_order:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        read_tfrecords, cycle_length=min(len(files), 16), num_parallel_calls=AUTOTUNE,
        deterministic=not any_order or seed is not None)
    if shard_records:
        dataset = dataset.shard(shards, input_context.input_pipeline_id)
    return dataset


def parse(serialized, config: ModelConfig):
    """The fields the model needs from one SequenceExample: JPEG list, log-mel [T, M], fps,
    labels. A record that cannot give them (no frame, no whole second of log-mel, fewer labels
    than heads) fails the input pipeline with `bad_record` naming its clip and what is missing,
    not deep inside a gather or parser."""
    sequence_spec = {}
    if "rgb" in config.modalities:
        sequence_spec[contract.IMAGE_ENCODED] = tf.io.FixedLenSequenceFeature(
            [], tf.string, allow_missing=True)
    if "spec" in config.modalities:
        sequence_spec[contract.MELSPEC] = tf.io.FixedLenSequenceFeature(
            [contract.SPEC_FRAMES_PER_SECOND * config.mel_bins], tf.float32, allow_missing=True)
    context, sequence = tf.io.parse_single_sequence_example(
        serialized,
        context_features={
            contract.LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
            contract.CLIP_FPS: tf.io.FixedLenFeature([], tf.float32, default_value=contract.FPS),
            contract.CLIP_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        },
        sequence_features=sequence_spec)
    clip = context[contract.CLIP_ID]
    labels = tf.sparse.to_dense(context[contract.LABEL_INDEX])
    heads = 0 if config.head == "multilabel" else len(config.num_classes)
    checks = [bad_record(tf.size(labels) >= heads, clip,
                         f"fewer than {heads} label(s) for the {config.head} head")]
    # Each label inside its head's classes: tf.one_hot would make one outside them all zeros.
    limits = (tf.constant(config.num_classes[:heads], tf.int64) if config.head == "verb_noun"
              else tf.fill(tf.shape(labels), tf.constant(config.num_classes[0], tf.int64)))
    within = labels[:tf.size(limits)]
    checks.append(bad_record(
        tf.reduce_all((within >= 0) & (within < limits[:tf.size(within)])), clip,
        f"a label index outside the model's classes ({' + '.join(map(str, config.num_classes))})",
        labels, advice="the model's num_classes must be the class map's count (mbt train takes "
        "it from the class_map.csv beside the records, or --set num_classes=N)"))
    parsed = {"fps": context[contract.CLIP_FPS]}
    if "rgb" in config.modalities:
        parsed["jpegs"] = sequence[contract.IMAGE_ENCODED]
        checks.append(bad_record(tf.size(parsed["jpegs"]) > 0, clip,
                                 f"no frame under {contract.IMAGE_ENCODED}"))
    if "spec" in config.modalities:
        parsed["spec"] = tf.reshape(sequence[contract.MELSPEC], [-1, config.mel_bins])
        checks.append(bad_record(tf.size(parsed["spec"]) > 0, clip,
                                 f"no whole second of log-mel under {contract.MELSPEC} (audio "
                                 "is stored a second per row: a clip under 1 s has none)"))
    with tf.control_dependencies(checks):
        parsed["labels"] = tf.identity(labels)
        return {k: tf.identity(v) for k, v in parsed.items()}


def bad_record(condition, clip_id, reason: str, *values, advice: str = BAD_RECORD_ADVICE):
    """An assertion that fails with BAD_RECORD's line naming the clip (and `values`, e.g. its
    labels) when `condition` is false; pipeline/cli.py shows that line as the user's error
    (user_error.bad_record_line)."""
    return tf.debugging.Assert(condition, [f"{BAD_RECORD} clip", clip_id, f": {reason}",
                                           *values, f"; {advice}"])


def label_vector(label_index, config: ModelConfig):
    """Dense float labels [sum(num_classes)]: multi-hot, one-hot, or verb one-hot + noun one-hot."""
    index = tf.cast(label_index, tf.int32)
    if config.head == "multilabel":
        return tf.minimum(tf.reduce_sum(tf.one_hot(index, config.num_classes[0]), axis=0), 1.0)
    if config.head == "singlelabel":
        return tf.one_hot(index[0], config.num_classes[0])
    verbs, nouns = config.num_classes
    return tf.concat([tf.one_hot(index[0], verbs), tf.one_hot(index[1], nouns)], axis=0)


def window_seconds(config: ModelConfig) -> float:
    """t of the paper: the spectrogram window spec_frames / 100 seconds."""
    return config.spec_frames / contract.SPEC_FRAMES_PER_SECOND


def _durations(parsed):
    """Seconds stored per modality."""
    seconds = {}
    if "jpegs" in parsed:
        seconds["rgb"] = tf.cast(tf.shape(parsed["jpegs"])[0], tf.float32) / parsed["fps"]
    if "spec" in parsed:
        seconds["spec"] = (tf.cast(tf.shape(parsed["spec"])[0], tf.float32)
                           / contract.SPEC_FRAMES_PER_SECOND)
    return seconds


def _random_start(duration, t):
    """A start time in [0, duration - t], on the 10 ms grid of the spectrogram."""
    last = tf.maximum(duration - t, 0.0) * contract.SPEC_FRAMES_PER_SECOND
    step = tf.random.uniform([], 0, tf.cast(tf.floor(last), tf.int32) + 1, dtype=tf.int32)
    return tf.cast(step, tf.float32) / contract.SPEC_FRAMES_PER_SECOND


def frame_indices(start, fps, num_stored, t, num_frames):
    """num_frames indices from `start` seconds at the stride t * fps / num_frames, looped
    over a clip shorter than the window (the window rule, `windows.window_indices`)."""
    return windows.window_indices(num_stored, num_frames, t * fps / num_frames,
                                  first=start * fps, xp=tnp)


def spec_window(spec, start, spec_frames):
    """spec_frames rows of spec [T, M] from `start` seconds, looped when the clip is short
    (`windows.window_indices`)."""
    first = tf.round(start * contract.SPEC_FRAMES_PER_SECOND)
    return tf.gather(spec, windows.window_indices(tf.shape(spec)[0], spec_frames, first=first,
                                                  xp=tnp))


def decode_crops(jpegs, crop_window):
    """uint8 [F, h, w, 3]: only the crop of each JPEG decoded. With F known when the graph is
    built (training: num_frames) the F decodes are separate ops, without map_fn's loop."""
    def decode(jpeg):
        return tf.io.decode_and_crop_jpeg(jpeg, crop_window, channels=3)
    if jpegs.shape[0] is not None:
        return tf.stack([decode(jpegs[i]) for i in range(jpegs.shape[0])])
    return tf.map_fn(decode, jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))


def decode_frames(jpegs, crop_window, image_size, scale: bool = True):
    """Decode only the crop of each JPEG, resize to image_size: float32 [F, S, S, 3] in [0, 1]
    (in [0, 255] with scale=False: training scales with its augmentation plan).

    Bilinear resizing straight from uint8 (a convex combination of the pixels, so no clip is
    needed) and one scale to [0, 1] after it: the same frames as scaling first, to float
    rounding, with two passes fewer over the crop."""
    frames = tf.image.resize(decode_crops(jpegs, crop_window), [image_size, image_size])
    return frames / 255.0 if scale else frames


def crop_bound(patterns):
    """(rows, cols) of the buffer `padded_crops` fills: (S, 2 S) for the short side S of the
    first record's frames (the preprocessing job stores every clip at one short side)."""
    first = next(iter(_all_records(patterns).take(1)))
    _, sequence = tf.io.parse_single_sequence_example(first, sequence_features={
        contract.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)})
    frames = sequence[contract.IMAGE_ENCODED]
    if int(tf.size(frames)) == 0:
        raise ValueError(f"the first record of {list_files(patterns)[0]} has no "
                         f"{contract.IMAGE_ENCODED} frames; an RGB model needs them")
    height, width = tf.image.extract_jpeg_shape(frames[0])[:2].numpy()
    short = int(min(height, width))
    return short, 2 * short


def padded_crops(jpegs, crop_window, bound):
    """(uint8 [F, rows, cols, 3], plan entries): only the crop of each JPEG decoded, as the
    floor decodes it, and copied into the top-left of a zero buffer of the fixed `bound`, so
    that clips batch and the training step resizes them (augment.resize_crops) instead of
    the host. Crops of portrait frames are stored transposed (long side along the buffer's
    cols). A crop longer than the buffer (frames wider than 2:1, when the draw takes nearly
    all of the frame) keeps its centre `bound` part."""
    rows, cols = bound
    shape = tf.image.extract_jpeg_shape(jpegs[0])
    transposed = shape[0] > shape[1]
    limit = tf.where(transposed, tf.constant([cols, rows]), tf.constant([rows, cols]))
    size = tf.minimum(crop_window[2:], limit)
    crops = decode_crops(jpegs, tf.concat([crop_window[:2] + (crop_window[2:] - size) // 2,
                                           size], axis=0))
    crops = tf.cond(transposed, lambda: tf.transpose(crops, [0, 2, 1, 3]), lambda: crops)
    size = tf.where(transposed, size[::-1], size)
    # Concatenating zeros is a copy; tf.pad on uint8 [F, h, w, 3] costs several times more.
    frames = jpegs.shape[0]
    crops = tf.concat([crops, tf.zeros([frames, size[0], cols - size[1], 3], tf.uint8)], axis=2)
    crops = tf.concat([crops, tf.zeros([frames, rows - size[0], cols, 3], tf.uint8)], axis=1)
    return (tf.ensure_shape(crops, [frames, rows, cols, 3]),
            {augment.CROP_SIZE: size, augment.CROP_TRANSPOSED: tf.cast(transposed, tf.float32)})


def _clip_inputs(parsed, starts, config, training: bool, scale: bool = True, crop_bound=None):
    """(model inputs of one window, plan entries): starts maps modality -> start seconds.
    Frames in [0, 1], or in [0, 255] with scale=False (train_dataset scales them with the
    augmentation plan); with a `crop_bound`, padded crops (`padded_crops`) to resize later."""
    t = window_seconds(config)
    inputs, plan = {}, {}
    if "rgb" in config.modalities:
        jpegs = parsed["jpegs"]
        index = frame_indices(starts["rgb"], parsed["fps"], tf.shape(jpegs)[0], t,
                              config.num_frames)
        selected = tf.gather(jpegs, index)
        crop = augment.random_crop_window if training else augment.centre_crop_window
        if crop_bound:
            inputs[contract.INPUT_RGB], plan = padded_crops(selected, crop(selected[0]),
                                                            crop_bound)
        else:
            frames = decode_frames(selected, crop(selected[0]), config.image_size, scale)
            inputs[contract.INPUT_RGB] = tf.ensure_shape(
                frames, [config.num_frames, config.image_size, config.image_size, 3])
    if "spec" in config.modalities:
        spec = spec_window(parsed["spec"], starts["spec"], config.spec_frames)
        spec = tf.ensure_shape(spec, [config.spec_frames, config.mel_bins])
        inputs[contract.INPUT_SPEC] = (augment.spec_augment(spec, config.spec_mean)
                                       if training else spec)
    return inputs, plan


def _train_example(serialized, config, sampling, augment_inputs, crop_bound=None):
    """(inputs, labels, plan): the plan holds the clip's flip and colour jitter draws, the
    frames' scale and, with a crop_bound, where its crop lies in the padded buffer."""
    parsed = parse(serialized, config)
    durations = _durations(parsed)
    t = window_seconds(config)
    if sampling == "sync":
        start = _random_start(tf.reduce_min(tf.stack(list(durations.values()))), t)
        starts = {m: start for m in durations}
    else:
        starts = {m: _random_start(d, t) for m, d in durations.items()}
    plan = augment.draw_rgb_plan() if augment_inputs and "rgb" in config.modalities else {}
    if "rgb" in config.modalities:
        plan[augment.RGB_SCALE] = tf.constant(1.0 / 255.0)
    inputs, crop_plan = _clip_inputs(parsed, starts, config, augment_inputs, scale=False,
                                     crop_bound=crop_bound)
    return inputs, label_vector(parsed["labels"], config), dict(plan, **crop_plan)


def eval_example(serialized, config, views):
    """`views` windows evenly spaced over the clip, stacked on a leading view axis."""
    parsed = parse(serialized, config)
    duration = tf.reduce_min(tf.stack(list(_durations(parsed).values())))
    last = tf.maximum(duration - window_seconds(config), 0.0)
    starts = tf.linspace(0.0, last, views) if views > 1 else tf.zeros([1])
    per_view = [_clip_inputs(parsed, {m: starts[v] for m in config.modalities}, config, False)[0]
                for v in range(views)]
    inputs = {k: tf.stack([view[k] for view in per_view]) for k in per_view[0]}
    return inputs, label_vector(parsed["labels"], config)


def train_dataset(patterns, config: ModelConfig, batch_size: int, *, sampling: str = "sync",
                  augment_inputs: bool = True, mixup_alpha: float = 0.3,
                  modality_mixup: bool = False, shuffle_buffer: int = 64, repeat: bool = True,
                  input_context: tf.distribute.InputContext = None, seed=None,
                  augment_on: str = "host", skip_batches: int = 0):
    """Batches of ({'rgb': [B,F,S,S,3], 'spec': [B,T,M]}, labels [B, C]) for training
    (labels {'rgb': [B, C], 'spec': [B, C]} once modality mixup has mixed them per input).

    `batch_size` is the global batch; with an `input_context` each pipeline
    yields its replicas' share. `mixup_alpha=0` turns mixup off. With
    augment_on="step" the flip, colour jitter and mixup are drawn here but not
    applied, and the frames are the decoded crops, uint8, zero-padded to one buffer size
    (`padded_crops`): batches are (inputs, labels, plan) for `augment.apply_plan` in the
    training step, which resizes the crops to image_size and scales them to [0, 1] first
    (plain (inputs, labels) in [0, 1] when there is nothing else to apply). Building it tunes
    the process's allocator for record-sized buffers (`host_memory`). `skip_batches`: the
    clips of that many batches are left out before they are decoded (a resumed epoch).
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling={sampling!r}: expected one of {SAMPLINGS}")
    if augment_on not in AUGMENT_PLACES:
        raise ValueError(f"augment_on={augment_on!r}: expected one of {AUGMENT_PLACES}")
    host_memory.tune_allocator()
    per_replica = input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size
    # Shuffled whether or not inputs are augmented: clips in file order would hand the model
    # one source's clips in a row. Reshuffled every epoch; a seed makes the order reproducible.
    dataset = _records(patterns, input_context, shuffle=True, seed=seed)
    if shuffle_buffer > 1:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.skip(skip_batches * per_replica)
    # The crops' resize goes to the step with the rest of the plan it comes with.
    pad_crops = augment_on == "step" and augment_inputs and "rgb" in config.modalities
    bound = crop_bound(patterns) if pad_crops else None
    dataset = dataset.map(lambda s: _train_example(s, config, sampling, augment_inputs, bound),
                          num_parallel_calls=AUTOTUNE, deterministic=seed is not None)
    dataset = dataset.batch(per_replica, drop_remainder=True)
    if mixup_alpha > 0:
        dataset = dataset.map(lambda x, y, plan: (x, y, dict(plan, **{
            augment.mixup_key(modality_mixup): augment.draw_mixup(mixup_alpha, len(x),
                                                                  modality_mixup)})))
    if augment_on == "host" or not set(dataset.element_spec[2]) - {augment.RGB_SCALE}:
        dataset = dataset.map(lambda x, y, plan: augment.apply_plan(x, y, plan),
                              num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def eval_dataset(patterns, config: ModelConfig, batch_size: int, *, views: int = 4,
                 input_context: tf.distribute.InputContext = None, padded: bool = False):
    """Batches of ({'rgb': [B,V,F,S,S,3], 'spec': [B,V,T,M]}, labels [B, C]) in file order.

    `padded`: (inputs, labels, valid [B]) batches, every one full: the clips (valid 1)
    followed by clips of zeros (valid 0) without end. Every replica then computes one static
    shape (what a TPU compiles once), and workers whose shards differ in length keep stepping
    together until none has a clip left (Trainer.evaluate stops there)."""
    if views < 1:
        raise ValueError(f"views={views} must be >= 1")
    host_memory.tune_allocator()
    dataset = _records(patterns, input_context, shuffle=False)
    dataset = dataset.map(lambda s: eval_example(s, config, views), num_parallel_calls=AUTOTUNE)
    if not padded:
        return dataset.batch(batch_size).prefetch(AUTOTUNE)
    zeros = tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype),
                                  dataset.element_spec)
    filler = tf.data.Dataset.from_tensors(zeros + (tf.constant(0.0),)).repeat()
    dataset = dataset.map(lambda inputs, labels: (inputs, labels, tf.constant(1.0)))
    return dataset.concatenate(filler).batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)


def class_names(patterns, num_classes=None):
    """Class names by index, read from the examples' label names ('class_<i>' if absent):
    `clip/label/text`, or version-1 records' `clip/label/string`. `num_classes` is the
    model's class count, or its counts per head (config.num_classes): with two heads
    (verb_noun) a record's second label indexes the nouns, named after all the verbs."""
    def names(serialized):
        parsed, _ = tf.io.parse_single_sequence_example(serialized, context_features={
            contract.LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
            contract.LABEL_TEXT: tf.io.VarLenFeature(tf.string),
            contract.LABEL_STRING: tf.io.VarLenFeature(tf.string)})
        text = tf.sparse.to_dense(parsed[contract.LABEL_TEXT], default_value=b"")
        legacy = tf.sparse.to_dense(parsed[contract.LABEL_STRING], default_value=b"")
        return (tf.sparse.to_dense(parsed[contract.LABEL_INDEX]),
                tf.cond(tf.size(text) > 0, lambda: text, lambda: legacy))

    heads = (num_classes,) if isinstance(num_classes, int) else tuple(num_classes or ())
    offsets = [sum(heads[:h]) for h in range(len(heads))] if len(heads) > 1 else []
    dataset = _all_records(patterns)
    found = {}
    for index, strings in dataset.map(names, num_parallel_calls=AUTOTUNE).as_numpy_iterator():
        for position, (i, name) in enumerate(zip(index.tolist(), strings.tolist())):
            found.setdefault(i + (offsets[position] if position < len(offsets) else 0),
                             name.decode())
    size = sum(heads) if heads else (max(found) + 1 if found else 0)
    return [found.get(i, f"class_{i}") for i in range(size)]
