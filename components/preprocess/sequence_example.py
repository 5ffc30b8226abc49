"""DecodedClip -> tf.train.SequenceExample with the DMVR keys Scenic's MBT loaders read.

Feature lists: one JPEG per frame and one element per whole second of audio holding 100 log-mel
frames x 128 bins flattened (the trailing fraction of a second is not stored, so every element
has the fixed length Scenic's FixedLenSequenceFeature expects). The optional waveform is ONE
element holding every sample, as DMVR's add_audio reads it. Label names go under DMVR's
`clip/label/text`, the clip's bounds are MediaSequence's int64 microseconds, and
`clip/format_version` tells these records from version 1's. See docs/data_format.md.
"""
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

from components.preprocess.clip_decoder import DecodedClip
from components.preprocess.jpeg import JPEG_QUALITY, encode_jpeg
from mbt_keras import contract
from mbt_keras.log_mel import END_PADDING, log_mel_spectrogram

# One trace for every clip length (a [None] signature), not one per waveform shape.
_log_mel = tf.function(log_mel_spectrogram, input_signature=[tf.TensorSpec([None], tf.float32)])
# A longer waveform's log-mel is computed this many seconds at a time, so that the STFT of a
# long record (several times its waveform's size) is never in memory whole.
LOG_MEL_BLOCK_SECONDS = 120


class RecordTooLarge(ValueError):
    """A record whose JPEG frames pass the cap given to `chunks_to_sequence_example`."""


def clip_to_sequence_example(clip: DecodedClip, **options) -> tf.train.SequenceExample:
    """The record of one decoded clip (`chunks_to_sequence_example`'s options)."""
    return chunks_to_sequence_example([clip], **options)


def chunks_to_sequence_example(chunks: Iterable[DecodedClip], *, clip_id: str, uri: str,
                               labels: Sequence[str], class_map: Dict[str, int],
                               include_waveform: bool = False,
                               jpeg_quality: int = JPEG_QUALITY,
                               max_frame_bytes: Optional[int] = None
                               ) -> tf.train.SequenceExample:
    """Builds the record of consecutive chunks of one decode (`decode_chunks`); `labels` are
    class names, looked up in `class_map`. Each chunk's frames go into the record as JPEGs
    before the next chunk is decoded, so the raw frames of a long clip are never all in
    memory; JPEG bytes past `max_frame_bytes` raise RecordTooLarge."""
    example = tf.train.SequenceExample()
    lists = example.feature_lists.feature_list
    images = lists[contract.IMAGE_ENCODED].feature
    head = tail = None
    waveforms, frame_bytes, skipped = [], 0, 0
    for chunk in chunks:
        head, tail = head or chunk, chunk
        for frame in chunk.frames:
            jpeg = encode_jpeg(frame, jpeg_quality)
            frame_bytes += len(jpeg)
            images.add().bytes_list.value.append(jpeg)
        if max_frame_bytes is not None and frame_bytes > max_frame_bytes:
            raise RecordTooLarge(f"{frame_bytes / 2**20:.0f} MiB of JPEG frames in its first "
                                 f"{tail.end - head.start:.1f} s, over the cap of one record "
                                 f"({max_frame_bytes / 2**20:.0f} MiB)")
        waveforms.append(chunk.waveform)
        skipped += chunk.skipped_packets
    waveform = np.concatenate(waveforms)
    context = example.context.feature
    context[contract.LABEL_INDEX].int64_list.value.extend(class_map[n] for n in labels)
    context[contract.LABEL_TEXT].bytes_list.value.extend(n.encode() for n in labels)
    context[contract.VIDEO_FILENAME].bytes_list.value.append(uri.encode())
    context[contract.CLIP_ID].bytes_list.value.append(clip_id.encode())
    context[contract.CLIP_FPS].float_list.value.append(head.fps)
    context[contract.CLIP_SAMPLE_RATE].int64_list.value.append(head.sample_rate)
    context[contract.CLIP_START].int64_list.value.append(_microseconds(head.start))
    context[contract.CLIP_END].int64_list.value.append(_microseconds(tail.end))
    context[contract.CLIP_DURATION].float_list.value.append(tail.end - head.start)
    context[contract.HAS_AUDIO].int64_list.value.append(int(head.has_audio))
    context[contract.FORMAT_VERSION].int64_list.value.append(contract.RECORD_FORMAT_VERSION)
    context[contract.SKIPPED_PACKETS].int64_list.value.append(skipped)
    mels = lists[contract.MELSPEC].feature
    for block in log_mel_seconds(waveform):
        for second in block:
            mels.add().float_list.value.extend(second.tolist())
    if include_waveform:
        lists[contract.WAVEFORM].feature.add().float_list.value.extend(waveform.tolist())
    return example


def log_mel_seconds(waveform: np.ndarray):
    """The log-mel of every whole second of `waveform` ([seconds, 100 x 128] arrays, in
    blocks of up to LOG_MEL_BLOCK_SECONDS): the frames `log_mel_spectrogram` gives for the
    whole waveform, since each frame reads only its own 400 samples (a block reads on into
    the next block's first samples, where the whole waveform's frame does too)."""
    rate = contract.SAMPLE_RATE
    total = len(waveform) // rate * rate
    block = LOG_MEL_BLOCK_SECONDS * rate
    for begin in range(0, total, block):
        end = min(begin + block, total)
        ahead = END_PADDING if end < total else 0
        frames = (end - begin) // contract.HOP_SAMPLES
        mel = _log_mel(waveform[begin:end + ahead]).numpy()[:frames]
        yield mel.reshape((end - begin) // rate, -1)


def _microseconds(seconds: float) -> int:
    return int(round(seconds * 1_000_000))
