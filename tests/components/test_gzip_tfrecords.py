"""WriteGzipTFRecords writes standard GZIP TFRecord shards that every reader takes back."""
import glob
import gzip
import os

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
import numpy as np
import pytest
import tensorflow as tf

from components.preprocess.gzip_tfrecords import WriteGzipTFRecords

# Compressible (repeated) and incompressible (random) records, one empty, one over 64 KiB.
RECORDS = [b"", b"mel" * 5000, np.random.default_rng(0).bytes(200_000), b"x"]


def _write(tmp_path, level):
    prefix = str(tmp_path / f"level{level}" / "data_tfrecord")
    with beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(RECORDS) | WriteGzipTFRecords(prefix, level=level, num_shards=2)
    return sorted(glob.glob(prefix + "*"))


@pytest.mark.parametrize("level", [0, 1, 3])
def test_shards_are_gzip_tfrecords_that_tf_and_beam_read_back(tmp_path, level):
    files = _write(tmp_path, level)
    assert [os.path.basename(f) for f in files] == [
        "data_tfrecord-00000-of-00002.gz", "data_tfrecord-00001-of-00002.gz"]
    payload = b"".join(gzip.open(f).read() for f in files)  # plain gzip: Python's gzip reads it
    assert len(payload) == sum(len(r) + 16 for r in RECORDS)  # 12-byte header + 4-byte CRC each
    read = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(read) == sorted(RECORDS)
    with beam.Pipeline() as pipeline:
        back = pipeline | beam.io.ReadFromTFRecord(os.path.dirname(files[0]) + "/*.gz")
        assert_that(back, equal_to(RECORDS))


def test_level_1_compresses_what_deflate_can(tmp_path):
    files = _write(tmp_path, 1)
    raw = sum(len(r) + 16 for r in RECORDS)
    # The repeated record shrinks to almost nothing; the random one cannot shrink.
    assert 200_000 < sum(os.path.getsize(f) for f in files) < raw - 14_000


def test_level_outside_igzip_range_is_rejected():
    with pytest.raises(ValueError, match="GZIP level 6: igzip levels are 0-3"):
        WriteGzipTFRecords("/tmp/x", level=6)
