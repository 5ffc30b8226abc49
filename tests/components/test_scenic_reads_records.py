"""Records of the preprocessing job read the way DMVR and Scenic's MBT loader read them.

The parsing spec below is written out from DMVR's `modalities.add_image` / `add_label` /
`add_audio` and Scenic's `projects/mbt/datasets/dataset_utils.add_spectrogram` as Scenic's
MBT AudioSet config (balanced_audioset_base.py) uses them: no compression type (DMVR's
TFRecordsSource opens files with `tf.data.TFRecordDataset(path)`), shards found from the
sharded spec `<prefix>@N`, and plain `tf.io.parse_single_sequence_example`. It is kept here on
purpose instead of importing mbt_keras.contract: a renamed key must fail this test.
"""
import glob
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from components.preprocess.clip_decoder import decode_clip
from components.preprocess.label_files import ClipRecord
from components.preprocess.transform import RECORDS_FILE_NAME, SplitToTFRecords
from mbt_keras.log_mel import log_mel_spectrogram

# Scenic MBT / DMVR parsing spec (feature-list vs context, dtypes, element shapes).
SCENIC_CONTEXT = {
    "clip/label/index": tf.io.VarLenFeature(tf.int64),    # add_label
    "clip/label/text": tf.io.VarLenFeature(tf.string),    # add_label(add_label_name=True)
}
SCENIC_SEQUENCE = {
    "image/encoded": tf.io.FixedLenSequenceFeature((), tf.string),              # add_image
    "melspec/feature/floats": tf.io.FixedLenSequenceFeature((100, 128), tf.float32),
    "WAVEFORM/feature/floats": tf.io.VarLenFeature(tf.float32),                 # add_audio
}
# MediaSequence's clip bounds: int64 microseconds.
MEDIASEQUENCE_CONTEXT = {
    "clip/start/timestamp": tf.io.FixedLenFeature((), tf.int64),
    "clip/end/timestamp": tf.io.FixedLenFeature((), tf.int64),
}
SHORT_SIDE = 64


def _sharded_filenames(spec):
    """Scenic's vivit file_utils expansion of `<prefix>@N`: prefix-00000-of-0000N, width 5."""
    prefix, count = spec.rsplit("@", 1)
    return [f"{prefix}-{i:05d}-of-{int(count):05d}" for i in range(int(count))]


@pytest.fixture(scope="module")
def written(media, tmp_path_factory):
    root = tmp_path_factory.mktemp("scenic")
    clips = [ClipRecord("bunny", media["bunny"], ("cat",), 1.0, 4.0, "train"),
             ClipRecord("good", media["good"], ("dog",), None, None, "train")]
    prefix = str(root / "Split-train" / RECORDS_FILE_NAME)
    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(clips) | SplitToTFRecords(
            {"cat": 0, "dog": 1}, "train", prefix, str(root / "dead"), short_side=SHORT_SIDE,
            include_waveform=True)
    shards = sorted(glob.glob(prefix + "-*"))
    return dict(prefix=prefix, shards=shards, media=media)


def test_shards_are_uncompressed_and_named_as_a_scenic_sharded_spec(written):
    spec = f"{written['prefix']}@{len(written['shards'])}"
    assert _sharded_filenames(spec) == written["shards"]
    for path in written["shards"]:
        with open(path, "rb") as f:
            assert f.read(2) != b"\x1f\x8b"  # not a gzip stream


def test_dmvr_scenic_spec_parses_frames_spectrogram_waveform_and_labels(written):
    spec = f"{written['prefix']}@{len(written['shards'])}"
    dataset = tf.data.TFRecordDataset(_sharded_filenames(spec))  # no compression_type
    parsed = {}
    for serialized in dataset:
        context, sequence = tf.io.parse_single_sequence_example(
            serialized, context_features={**SCENIC_CONTEXT, **MEDIASEQUENCE_CONTEXT},
            sequence_features=SCENIC_SEQUENCE)
        label = tf.sparse.to_dense(context["clip/label/text"]).numpy().tolist()
        parsed[label[0].decode()] = (context, sequence)
    assert sorted(parsed) == ["cat", "dog"]

    context, sequence = parsed["cat"]  # bunny, [1 s, 4 s)
    clip = decode_clip(written["media"]["bunny"], start=1.0, end=4.0, short_side=SHORT_SIDE)
    assert tf.sparse.to_dense(context["clip/label/index"]).numpy().tolist() == [0]
    assert int(context["clip/start/timestamp"]) == 1_000_000
    assert int(context["clip/end/timestamp"]) == 4_000_000
    frames = sequence["image/encoded"]
    assert frames.shape == (75,)  # 3 s at 25 fps
    first = tf.io.decode_jpeg(frames[0]).numpy()
    assert first.shape == clip.frames[0].shape
    assert np.abs(first.astype(int) - clip.frames[0]).mean() < 6  # JPEG q90 of a 64-px frame
    mel = sequence["melspec/feature/floats"]
    assert mel.shape == (3, 100, 128)
    # add_audio: to_dense(x)[0] is the whole waveform (DMVR stores it as ONE element).
    waveform = tf.sparse.to_dense(sequence["WAVEFORM/feature/floats"])
    assert waveform.shape == (1, 3 * 16000)
    np.testing.assert_allclose(waveform[0], clip.waveform, atol=1e-6)
    # Scenic's add_spectrogram reshapes to [-1, 128]: the log-mel of that waveform.
    np.testing.assert_allclose(tf.reshape(mel, (-1, 128)),
                               log_mel_spectrogram(waveform[0]), atol=1e-4)

    context, sequence = parsed["dog"]  # the whole 3 s clip at 10 fps resampled to 25 fps
    assert tf.sparse.to_dense(context["clip/label/index"]).numpy().tolist() == [1]
    assert int(context["clip/start/timestamp"]) == 0
    assert int(context["clip/end/timestamp"]) == 3_000_000
    assert sequence["image/encoded"].shape == (75,)
    assert sequence["melspec/feature/floats"].shape == (3, 100, 128)


def test_gzip_option_writes_gz_shards_that_only_a_gzip_reader_opens(media, tmp_path):
    prefix = str(tmp_path / RECORDS_FILE_NAME)
    with beam.Pipeline() as pipeline:
        _ = (pipeline | beam.Create([ClipRecord("good", media["good"], ("dog",), None, None,
                                                "train")])
             | SplitToTFRecords({"dog": 0}, "train", prefix, str(tmp_path / "dead"),
                                short_side=SHORT_SIDE, compression="gzip"))
    [path] = glob.glob(prefix + "-*")
    assert path.endswith("-00000-of-00001.gz")
    [record] = list(tf.data.TFRecordDataset(path, compression_type="GZIP"))
    example = tf.train.SequenceExample.FromString(record.numpy())
    assert example.context.feature["clip/label/text"].bytes_list.value == [b"dog"]
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(path))
    with pytest.raises(ValueError, match="compression='zip': expected one of"):
        SplitToTFRecords({}, "train", prefix, str(tmp_path / "dead"), compression="zip")
    assert os.path.exists(path)
