"""DecodedClip -> tf.train.SequenceExample with the DMVR keys Scenic's MBT loaders read.

Feature lists: one JPEG per frame and one element per whole second of audio holding 100 log-mel
frames x 128 bins flattened (the trailing fraction of a second is not stored, so every element
has the fixed length Scenic's FixedLenSequenceFeature expects). The optional waveform is ONE
element holding every sample, as DMVR's add_audio reads it. Label names go under DMVR's
`clip/label/text`, the clip's bounds are MediaSequence's int64 microseconds, and
`clip/format_version` tells these records from version 1's. See docs/data_format.md.

`chunks_to_record` writes the serialized record itself, at twice its size at the peak: the JPEG
frames are framed by hand in the protobuf wire format (the frame list is one entry of the
`feature_lists` map, the rest is built as messages), where building a SequenceExample message
and serializing it peaks at three times (upb's arena, then the string).
"""
from typing import Dict, Iterable, NamedTuple, Optional, Sequence

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
    """A record whose JPEG frames pass the cap given to `chunks_to_record`."""


class Record(NamedTuple):
    serialized: bytes        # a tf.train.SequenceExample
    skipped_packets: int     # damaged packets skipped while decoding its clip


def clip_to_sequence_example(clip: DecodedClip, **options) -> tf.train.SequenceExample:
    """The record of one decoded clip as a message (`chunks_to_record`'s options)."""
    return tf.train.SequenceExample.FromString(chunks_to_record([clip], **options).serialized)


def chunks_to_record(chunks: Iterable[DecodedClip], *, clip_id: str, uri: str,
                     labels: Sequence[str], class_map: Dict[str, int],
                     include_waveform: bool = False, jpeg_quality: int = JPEG_QUALITY,
                     max_frame_bytes: Optional[int] = None) -> Record:
    """The serialized record of consecutive chunks of one decode (`decode_chunks`); `labels`
    are class names, looked up in `class_map`. Each chunk's frames become JPEGs before the
    next chunk is decoded, so the raw frames of a long clip are never all in memory; JPEG
    bytes past `max_frame_bytes` raise RecordTooLarge."""
    head = tail = None
    # One growing buffer, not a list of pieces: freed pieces of ~30 KB stay in the heap,
    # a large buffer goes back to the system when the record is joined.
    frames, waveforms, skipped = bytearray(), [], 0
    for chunk in chunks:
        head, tail = head or chunk, chunk
        for frame in chunk.frames:
            jpeg = encode_jpeg(frame, jpeg_quality)
            frames += _bytes_feature_header(len(jpeg))
            frames += jpeg
        if max_frame_bytes is not None and len(frames) > max_frame_bytes:
            raise RecordTooLarge(f"{len(frames) / 2**20:.0f} MiB of JPEG frames in its first "
                                 f"{tail.end - head.start:.1f} s, over the cap of one record "
                                 f"({max_frame_bytes / 2**20:.0f} MiB)")
        waveforms.append(chunk.waveform)
        skipped += chunk.skipped_packets
    waveform = np.concatenate(waveforms)
    context = tf.train.Features()
    feature = context.feature
    feature[contract.LABEL_INDEX].int64_list.value.extend(class_map[n] for n in labels)
    feature[contract.LABEL_TEXT].bytes_list.value.extend(n.encode() for n in labels)
    feature[contract.VIDEO_FILENAME].bytes_list.value.append(uri.encode())
    feature[contract.CLIP_ID].bytes_list.value.append(clip_id.encode())
    feature[contract.CLIP_FPS].float_list.value.append(head.fps)
    feature[contract.CLIP_SAMPLE_RATE].int64_list.value.append(head.sample_rate)
    feature[contract.CLIP_START].int64_list.value.append(_microseconds(head.start))
    feature[contract.CLIP_END].int64_list.value.append(_microseconds(tail.end))
    feature[contract.CLIP_DURATION].float_list.value.append(tail.end - head.start)
    feature[contract.HAS_AUDIO].int64_list.value.append(int(head.has_audio))
    feature[contract.FORMAT_VERSION].int64_list.value.append(contract.RECORD_FORMAT_VERSION)
    feature[contract.SKIPPED_PACKETS].int64_list.value.append(skipped)
    lists = tf.train.FeatureLists()
    mels = lists.feature_list[contract.MELSPEC].feature
    for block in log_mel_seconds(waveform):
        for second in block:
            mels.add().float_list.value.extend(second.tolist())
    if include_waveform:
        lists.feature_list[contract.WAVEFORM].feature.add().float_list.value.extend(
            waveform.tolist())
    return Record(_sequence_example(context.SerializeToString(), lists.SerializeToString(),
                                    frames), skipped)


# Wire format: a length-delimited field is its tag byte ((number << 3) | 2), the payload's
# length as a varint, the payload. SequenceExample: context = 1, feature_lists = 2;
# FeatureLists: feature_list (map entries) = 1; map entry: key = 1, value = 2; FeatureList:
# feature = 1; Feature: bytes_list = 1; BytesList: value = 1.
_FIELD_1, _FIELD_2 = b"\x0a", b"\x12"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, length: int) -> bytes:
    return tag + _varint(length)


def _bytes_feature_header(size: int) -> bytes:
    """What precedes a `size`-byte value as one Feature (a one-value BytesList) of a
    FeatureList."""
    bytes_list = 1 + len(_varint(size)) + size
    feature = 1 + len(_varint(bytes_list)) + bytes_list
    return (_delimited(_FIELD_1, feature) + _delimited(_FIELD_1, bytes_list)
            + _delimited(_FIELD_1, size))


def _sequence_example(context: bytes, lists: bytes, frames: bytearray) -> bytes:
    """SequenceExample{context, feature_lists: `lists` + the entry IMAGE_ENCODED: `frames`
    (its FeatureList's features)}, joined once."""
    key = contract.IMAGE_ENCODED.encode()
    frame_list = len(frames)
    entry_head = _delimited(_FIELD_1, len(key)) + key + _delimited(_FIELD_2, frame_list)
    entry = _delimited(_FIELD_1, len(entry_head) + frame_list)
    feature_lists = len(lists) + len(entry) + len(entry_head) + frame_list
    return b"".join([_delimited(_FIELD_1, len(context)), context,
                     _delimited(_FIELD_2, feature_lists), lists, entry, entry_head, frames])


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
