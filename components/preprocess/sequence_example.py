"""DecodedClip -> tf.train.SequenceExample with the DMVR keys Scenic's MBT loaders read.

Feature lists: one JPEG per frame and one element per whole second of audio holding 100 log-mel
frames x 128 bins flattened (the trailing fraction of a second is not stored, so every element
has the fixed length Scenic's FixedLenSequenceFeature expects). The optional waveform is ONE
element holding every sample, as DMVR's add_audio reads it. Label names go under DMVR's
`clip/label/text`, the clip's bounds are MediaSequence's int64 microseconds, and
`clip/format_version` tells these records from version 1's. See docs/data_format.md.
"""
from typing import Dict, Sequence

import tensorflow as tf

from components.preprocess.clip_decoder import DecodedClip
from components.preprocess.jpeg import JPEG_QUALITY, encode_jpeg
from mbt_keras import contract
from mbt_keras.log_mel import log_mel_spectrogram

# One trace for every clip length (a [None] signature), not one per waveform shape.
_log_mel = tf.function(log_mel_spectrogram, input_signature=[tf.TensorSpec([None], tf.float32)])


def clip_to_sequence_example(clip: DecodedClip, *, clip_id: str, uri: str,
                             labels: Sequence[str], class_map: Dict[str, int],
                             include_waveform: bool = False,
                             jpeg_quality: int = JPEG_QUALITY) -> tf.train.SequenceExample:
    """Builds the record; `labels` are class names, looked up in `class_map`."""
    seconds = len(clip.waveform) // contract.SAMPLE_RATE
    waveform = clip.waveform[:seconds * contract.SAMPLE_RATE]
    mel = _log_mel(waveform).numpy().reshape(seconds, -1)
    example = tf.train.SequenceExample()
    context = example.context.feature
    context[contract.LABEL_INDEX].int64_list.value.extend(class_map[n] for n in labels)
    context[contract.LABEL_TEXT].bytes_list.value.extend(n.encode() for n in labels)
    context[contract.VIDEO_FILENAME].bytes_list.value.append(uri.encode())
    context[contract.CLIP_ID].bytes_list.value.append(clip_id.encode())
    context[contract.CLIP_FPS].float_list.value.append(clip.fps)
    context[contract.CLIP_SAMPLE_RATE].int64_list.value.append(clip.sample_rate)
    context[contract.CLIP_START].int64_list.value.append(_microseconds(clip.start))
    context[contract.CLIP_END].int64_list.value.append(_microseconds(clip.end))
    context[contract.CLIP_DURATION].float_list.value.append(clip.duration)
    context[contract.HAS_AUDIO].int64_list.value.append(int(clip.has_audio))
    context[contract.FORMAT_VERSION].int64_list.value.append(contract.RECORD_FORMAT_VERSION)
    context[contract.SKIPPED_PACKETS].int64_list.value.append(clip.skipped_packets)
    lists = example.feature_lists.feature_list
    images = lists[contract.IMAGE_ENCODED].feature
    for frame in clip.frames:
        images.add().bytes_list.value.append(encode_jpeg(frame, jpeg_quality))
    mels = lists[contract.MELSPEC].feature
    for second in mel:
        mels.add().float_list.value.extend(second.tolist())
    if include_waveform:
        lists[contract.WAVEFORM].feature.add().float_list.value.extend(clip.waveform.tolist())
    return example


def _microseconds(seconds: float) -> int:
    return int(round(seconds * 1_000_000))
