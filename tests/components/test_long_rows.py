"""Rows of any length in bounded memory: a long video labelled as a whole is cut into
segment records by default (`--segment-seconds`), kept whole and streamed with
`--segment-seconds 0`, and refused as a `too_long` dead letter past the record cap. The peak
memory of `mbt preprocess` is measured in a process of its own (tests/components/peak_memory.py)."""
import glob
import json
import os
import subprocess
import sys

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from components.preprocess.clip_decoder import probe
from components.preprocess.label_files import parse_label_file, write_class_map
from components.preprocess.segments import segment_clip_id, segment_windows
from components.preprocess.transform import DEAD_LETTERS, EXAMPLES, ClipsToExamples
from mbt_keras import contract
from tests.components.conftest import BUNNY, run_counting, write_clip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# long_clip: 180 s at 10 fps of 64x48, stored at 25 fps with the short side 256: 4500 frames
# of 341x256 RGB, 1.18 GB if the whole row's frames were in memory once (before segments
# and streaming the job peaked 1.96 GB above its warm-up on this row).
FRAMES = 180 * 25
RAW_BYTES = FRAMES * 341 * 256 * 3
# What a row may add to the job's peak at the default settings: a third of its frames held
# once (a minute of them), whatever the video's length.
BOUND = RAW_BYTES // 3


def test_segment_windows_cut_consecutive_pieces_and_fold_a_short_tail():
    assert segment_windows(0.0, 596.0, 60.0)[-1] == (540.0, 596.0)
    assert len(segment_windows(0.0, 596.0, 60.0)) == 10
    assert segment_windows(10.0, 160.0, 60.0) == [(10.0, 70.0), (70.0, 130.0), (130.0, 160.0)]
    assert segment_windows(0.0, 120.5, 60.0) == [(0.0, 60.0), (60.0, 120.5)]  # tail < 1 s
    assert segment_windows(0.0, 60.0, 60.0) == [(0.0, 60.0)]
    assert segment_windows(0.0, 5000.0, 0) == [(0.0, 5000.0)]
    assert segment_clip_id("film", 60.0, 120.0) == "film@60000-120000"


def _records(out):
    paths = glob.glob(os.path.join(out, "Split-train", "data_tfrecord-*"))
    return {e.context.feature[contract.CLIP_ID].bytes_list.value[0].decode(): e for e in (
        tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(paths))}


def _images(example):
    return [f.bytes_list.value[0] for f in
            example.feature_lists.feature_list[contract.IMAGE_ENCODED].feature]


def _mel(example):
    return np.array([f.float_list.value for f in
                     example.feature_lists.feature_list[contract.MELSPEC].feature])


@pytest.fixture(scope="module")
def runs(long_clip, tmp_path_factory):
    """`mbt preprocess` three times in one process: a 3 s clip (warm-up), the long video as
    a whole row plus a 150 s window of it and a short window (default segments), and the
    whole row with --segment-seconds 0; peak memory after each."""
    root = tmp_path_factory.mktemp("long_rows")
    write_clip(str(root / "short.mp4"), 3.0, fps=10, rate=16000, layout="mono")
    os.symlink(long_clip, root / "film.mp4")
    (root / "short.csv").write_text("clip_id,path,labels,split\nshort,short.mp4,dog,train\n")
    (root / "long.csv").write_text("clip_id,path,labels,start,end,split\n"
                                   "film,film.mp4,dog,,,train\n"
                                   "win,film.mp4,cat;dog,10,160,train\n"
                                   "brief,film.mp4,cat,20,25,train\n")
    (root / "whole.csv").write_text("clip_id,path,labels,split\nfilm,film.mp4,dog,train\n")
    job = ["preprocess", "--videos", str(root), "--splits", "train:1", "--quiet", "--workers",
           "1"]
    groups = [job + ["--labels", str(root / "short.csv"), "--out", str(root / "warm")],
              job + ["--labels", str(root / "long.csv"), "--out", str(root / "segments")],
              job + ["--labels", str(root / "whole.csv"), "--out", str(root / "whole"),
                     "--segment-seconds", "0"]]
    argv = [sys.executable, "-m", "tests.components.peak_memory", str(root / "peaks.json")]
    for group in groups:
        argv += group + ["---"]
    subprocess.run(argv[:-1], cwd=ROOT, check=True, timeout=900,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    peaks = json.loads((root / "peaks.json").read_text())
    assert [p["status"] for p in peaks] == [0, 0, 0]
    return dict(root=root, growth=[p["maxrss"] - peaks[0]["maxrss"] for p in peaks[1:]],
                segments=_records(str(root / "segments")), whole=_records(str(root / "whole")),
                counts=json.loads((root / "segments" / "DeadLetters" / "counts-train.json")
                                  .read_text()))


def test_memory_per_row_is_bounded_whatever_the_length(runs):
    segmented, whole = runs["growth"]
    print(f"peak above the warm-up: segments {segmented / 2**20:.0f} MiB, whole row "
          f"{whole / 2**20:.0f} MiB")
    assert segmented < BOUND, f"segments: {segmented / 2**20:.0f} MiB over the warm-up"
    assert whole < BOUND, f"whole row: {whole / 2**20:.0f} MiB over the warm-up"


def test_long_rows_become_segment_records_with_the_rows_labels(runs):
    records = runs["segments"]
    expected = {"film@0-60000": (0, 60), "film@60000-120000": (60, 120),
                "film@120000-180000": (120, 180), "win@10000-70000": (10, 70),
                "win@70000-130000": (70, 130), "win@130000-160000": (130, 160),
                "brief": (20, 25)}
    assert set(records) == set(expected)
    for clip_id, (start, end) in expected.items():
        context = records[clip_id].context.feature
        assert context[contract.CLIP_START].int64_list.value[0] == start * 10**6, clip_id
        assert context[contract.CLIP_END].int64_list.value[0] == end * 10**6, clip_id
        assert len(_images(records[clip_id])) == (end - start) * 25, clip_id
        assert _mel(records[clip_id]).shape == (end - start, 100 * 128), clip_id
        labels = [b.decode() for b in context[contract.LABEL_TEXT].bytes_list.value]
        assert labels == (["dog"] if clip_id.startswith("film") else
                          ["cat", "dog"] if clip_id.startswith("win") else ["cat"])
    assert runs["counts"] == {"rows": 3, "read": 7, "written": 7, "rejected": 0,
                              "rejected_by_kind": {}}


def test_segments_hold_what_the_whole_row_holds(runs):
    (whole,) = runs["whole"].values()
    pieces = [runs["segments"][f"film@{a}-{a + 60000}"] for a in (0, 60000, 120000)]
    assert len(_images(whole)) == FRAMES
    assert sum((_images(p) for p in pieces), []) == _images(whole)
    # Each record's log-mel is of its own audio: only the two frames whose 25 ms reach past a
    # segment's end (zeros there, the next segment's samples in the whole row) differ.
    joined = np.concatenate([_mel(p) for p in pieces]).reshape(180, 100, 128)
    differ = np.abs(joined - _mel(whole).reshape(180, 100, 128)).max(axis=-1) > 1e-4
    assert set(zip(*np.nonzero(differ))) <= {(59, 98), (59, 99), (119, 98), (119, 99)}


@pytest.fixture(scope="module")
def bunny_in_ram():
    """The 5 s clip on a filesystem FFmpeg cannot open (TensorFlow's ram://, as gs://)."""
    uri = "ram://long_rows/bunny.mp4"
    with open(BUNNY, "rb") as f, tf.io.gfile.GFile(uri, "wb") as out:
        out.write(f.read())
    return uri


def _job(tmp_path, rows, **options):
    (tmp_path / "labels.csv").write_text("clip_id,path,labels\n" + "".join(
        f"{clip_id},{path},dog\n" for clip_id, path in rows))
    write_class_map({"dog": 0}, str(tmp_path / "class_map.csv"))
    records, class_map = parse_label_file(str(tmp_path / "labels.csv"), str(tmp_path),
                                          class_map_path=str(tmp_path / "class_map.csv"))
    pipeline = beam.Pipeline()
    outputs = pipeline | beam.Create(records) | ClipsToExamples(class_map, short_side=64,
                                                                **options)
    _ = outputs[EXAMPLES] | beam.io.WriteToTFRecord(str(tmp_path / "examples"))
    _ = (outputs[DEAD_LETTERS] | beam.Map(json.dumps)
         | beam.io.WriteToText(str(tmp_path / "dead")))
    counters = run_counting(pipeline)
    examples = [tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
        glob.glob(str(tmp_path / "examples*")))]
    letters = [json.loads(line) for path in glob.glob(str(tmp_path / "dead*"))
               for line in open(path)]
    return examples, letters, counters, str(tmp_path / "labels.csv")


def test_segments_of_a_remote_file_read_it_through_gfile(tmp_path, bunny_in_ram):
    examples, letters, counters, _ = _job(tmp_path, [("bunny", bunny_in_ram)],
                                          segment_seconds=2)
    assert not letters
    ids = sorted(e.context.feature[contract.CLIP_ID].bytes_list.value[0].decode()
                 for e in examples)
    length = probe(BUNNY).duration  # the header's, 5.28 s
    assert ids == ["bunny@0-2000", "bunny@2000-4000", f"bunny@4000-{round(length * 1000)}"]
    assert counters["rows_segmented"] == 1 and counters["written"] == 3


def test_a_row_over_the_record_cap_is_a_too_long_dead_letter_naming_row_length_and_flag(
        tmp_path, bunny_in_ram):
    examples, letters, counters, labels = _job(
        tmp_path, [("bunny", BUNNY), ("remote", bunny_in_ram)], segment_seconds=0,
        max_record_bytes=20_000)
    assert not examples and counters["rejected_too_long"] == 2
    by_id = {letter["item"]["clip_id"]: letter for letter in letters}
    for line, clip_id in ((2, "bunny"), (3, "remote")):
        reason = by_id[clip_id]["reason"]
        assert by_id[clip_id]["kind"] == "too_long"
        assert reason.startswith(f"{labels}:{line} ({clip_id}): row "
                                 f"{probe(BUNNY).duration:.1f} s too long"), reason
        assert "over the cap of one record" in reason and "--segment-seconds" in reason
