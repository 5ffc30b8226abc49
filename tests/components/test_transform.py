"""ClipsToExamples on real good and broken files: nothing crashes, nothing disappears."""
import glob
import json

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from components.preprocess.label_files import parse_label_file, write_class_map
from components.preprocess import transform
from components.preprocess.transform import EXAMPLES, ClipsToExamples, WriteOutcome, read_outcome
from mbt_keras import contract
from mbt_keras.log_mel import log_mel_spectrogram
from tests.components.conftest import run_counting

# (clip_id, file key, labels, start, end, expected dead-letter kind or None)
ROWS = [
    ("ok", "good", "dog", "", "", None),
    ("ok_window", "bunny", "cat", "1", "3", None),
    ("truncated", "truncated", "dog", "", "", "corrupt"),
    ("text", "text", "dog", "", "", "not_a_video"),
    ("no_audio", "silent", "dog", "", "", "no_audio"),
    ("too_short", "short", "dog", "", "", "too_short"),
    ("late_start", "good", "dog", "12", "", "out_of_range"),
    ("long_end", "good", "dog", "0", "9", "too_short"),
    ("unknown", "good_copy", "unicorn", "", "", "unknown_label"),
    ("missing", "missing", "dog", "", "", "missing_file"),
    ("ok_again", "good", "dog", "", "", "duplicate"),
]


@pytest.fixture(scope="module")
def job(media, tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    lines = ["clip_id,path,labels,start,end"] + [
        f"{cid},{media[key]},{labels},{start},{end}" for cid, key, labels, start, end, _ in ROWS]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    write_class_map({"cat": 0, "dog": 1}, str(root / "class_map.csv"))
    records, class_map = parse_label_file(str(root / "labels.csv"), str(root),
                                          class_map_path=str(root / "class_map.csv"))
    pipeline = beam.Pipeline()
    rows = pipeline | beam.Create(records)
    outputs = rows | ClipsToExamples(class_map, short_side=64, min_duration=1.0,
                                     include_waveform=True)
    _ = (outputs[EXAMPLES] | beam.io.WriteToTFRecord(str(root / "examples"), file_name_suffix=".gz",
                                   compression_type=beam.io.filesystem.CompressionTypes.GZIP))
    _ = {**outputs, transform.ROWS: rows} | WriteOutcome(str(root / "dead"), "all")
    counters = run_counting(pipeline)
    examples = [tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
        glob.glob(str(root / "examples*")), compression_type="GZIP")]
    letters = [json.loads(line) for path in glob.glob(str(root / "dead" / "dead_letters-*"))
               for line in open(path)]
    return dict(counters=counters, examples=examples, letters=letters,
                outcome=read_outcome(str(root / "dead")), labels=str(root / "labels.csv"))


def test_read_equals_written_plus_rejected(job):
    counters, outcome = job["counters"], job["outcome"]
    assert counters["read"] == len(ROWS) == outcome["read"]
    assert counters["written"] == 2 == outcome["written"] == len(job["examples"])
    assert counters["rejected"] == len(ROWS) - 2 == outcome["rejected"] == len(job["letters"])
    assert counters["read"] == counters["written"] + counters["rejected"]


def test_every_bad_input_is_a_dead_letter_with_a_reason_naming_its_row(job):
    letters = {letter["item"]["clip_id"]: letter for letter in job["letters"]}
    for line, (clip_id, _, _, _, _, kind) in enumerate(ROWS, 2):
        if kind is None:
            assert clip_id not in letters
            continue
        assert letters[clip_id]["kind"] == kind, letters[clip_id]
        assert letters[clip_id]["reason"].startswith(f"{job['labels']}:{line} ({clip_id}): ")
        assert letters[clip_id]["item"]["row"] == f"{job['labels']}:{line}"
        assert job["counters"][f"rejected_{kind}"] >= 1
    assert job["outcome"]["rejected_by_kind"]["too_short"] == 2
    assert f"duplicate of row {job['labels']}:2 (ok): same source and window" in \
        letters["ok_again"]["reason"]


def test_examples_follow_the_dmvr_contract(job):
    by_id = {e.context.feature[contract.CLIP_ID].bytes_list.value[0].decode(): e
             for e in job["examples"]}
    window = by_id["ok_window"]
    context, lists = window.context.feature, window.feature_lists.feature_list
    assert list(context[contract.LABEL_INDEX].int64_list.value) == [0]
    assert list(context[contract.LABEL_TEXT].bytes_list.value) == [b"cat"]
    assert contract.LABEL_STRING not in context  # version 1's key, no longer written
    assert context[contract.CLIP_START].int64_list.value[0] == 1_000_000  # MediaSequence: us
    assert context[contract.CLIP_END].int64_list.value[0] == 3_000_000
    assert context[contract.FORMAT_VERSION].int64_list.value[0] == contract.RECORD_FORMAT_VERSION
    assert context[contract.CLIP_DURATION].float_list.value[0] == 2.0
    assert context[contract.HAS_AUDIO].int64_list.value[0] == 1
    assert context[contract.CLIP_SAMPLE_RATE].int64_list.value[0] == 16000
    assert len(lists[contract.IMAGE_ENCODED].feature) == 50
    frame = tf.io.decode_jpeg(lists[contract.IMAGE_ENCODED].feature[0].bytes_list.value[0])
    assert frame.shape == (64, 114, 3)
    mels = lists[contract.MELSPEC].feature
    assert len(mels) == 2 and all(len(m.float_list.value) == 100 * 128 for m in mels)
    waves = lists[contract.WAVEFORM].feature  # DMVR's layout: the whole waveform, one element
    assert len(waves) == 1 and len(waves[0].float_list.value) == 2 * 16000
    # The stored log-mel is the shared function of the stored waveform.
    wave = np.asarray(waves[0].float_list.value, np.float32)
    np.testing.assert_allclose(
        np.concatenate([m.float_list.value for m in mels]).reshape(-1, 128),
        log_mel_spectrogram(wave).numpy(), atol=1e-4)
