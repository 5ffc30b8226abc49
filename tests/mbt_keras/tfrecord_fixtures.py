"""Tiny real TFRecords in the contract's format (SequenceExamples with real JPEGs; GZIP when
the file name ends with .gz, as the preprocessing job's --compression gzip writes them).

Frames and spectrograms carry their own time stamps so tests can see which
part of a clip a window came from: frame i is a flat grey of level
FRAME_LEVEL_STEP * i, and every bin of log-mel row r holds r.
"""
import numpy as np
import tensorflow as tf

from mbt_keras import contract, input_pipeline

FRAME_LEVEL_STEP = 8
JPEG_QUALITY = 90  # what the preprocessing job writes


def clip_arrays(seconds: float, fps: float, height: int, width: int, mel_bins: int = 128):
    """(frames uint8 [N,H,W,3], melspec float32 [seconds*100, mel_bins]) stamped with time."""
    num_frames = int(round(seconds * fps))
    levels = (np.arange(num_frames) * FRAME_LEVEL_STEP) % 256
    frames = np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3))
    rows = int(round(seconds * contract.SPEC_FRAMES_PER_SECOND))
    melspec = np.repeat(np.arange(rows, dtype=np.float32)[:, None], mel_bins, axis=1)
    return frames.astype(np.uint8), melspec


def sequence_example(frames, melspec, label_index, fps, label_names=(), clip_id="",
                     quality=JPEG_QUALITY, version=contract.RECORD_FORMAT_VERSION):
    """A SequenceExample with the DMVR keys of mbt_keras.contract; `version=1` writes the label
    names under version 1's key and no version marker."""
    example = tf.train.SequenceExample()
    context = example.context.feature
    context[contract.LABEL_INDEX].int64_list.value.extend(int(i) for i in label_index)
    names_key = contract.LABEL_STRING if version == 1 else contract.LABEL_TEXT
    context[names_key].bytes_list.value.extend(n.encode() for n in label_names)
    if version > 1:
        context[contract.FORMAT_VERSION].int64_list.value.append(version)
    context[contract.CLIP_FPS].float_list.value.append(float(fps))
    context[contract.CLIP_ID].bytes_list.value.append(clip_id.encode())
    lists = example.feature_lists.feature_list
    for frame in frames:
        lists[contract.IMAGE_ENCODED].feature.add().bytes_list.value.append(
            tf.io.encode_jpeg(frame, quality=quality).numpy())
    per_second = contract.SPEC_FRAMES_PER_SECOND
    for second in range(melspec.shape[0] // per_second):
        lists[contract.MELSPEC].feature.add().float_list.value.extend(
            melspec[second * per_second:(second + 1) * per_second].ravel().tolist())
    return example


def write_tfrecord(path, examples):
    """TFRecord file of serialized examples, GZIP when `path` ends with .gz."""
    with tf.io.TFRecordWriter(str(path), options=input_pipeline.compression_type(str(path))) \
            as writer:
        for example in examples:
            writer.write(example.SerializeToString())
    return str(path)


def write_clips(path, num_clips, num_classes, *, seconds=2.0, fps=10.0, height=40, width=48,
                labels_per_clip=1, seed=0, version=contract.RECORD_FORMAT_VERSION):
    """A file of `num_clips` stamped clips with labels (clip i has class i % num_classes first)."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(num_clips):
        frames, melspec = clip_arrays(seconds, fps, height, width)
        extra = rng.choice(num_classes, size=labels_per_clip - 1, replace=False).tolist()
        labels = [i % num_classes] + [c for c in extra if c != i % num_classes]
        examples.append(sequence_example(frames, melspec, labels, fps,
                                         [f"class_{c}" for c in labels], f"clip{i}",
                                         version=version))
    return write_tfrecord(path, examples)
