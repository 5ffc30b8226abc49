"""make-demo-data writes real, varied, deterministic clips whose cues follow the labels;
`mbt preprocess` turns them into TFRecords with a correct summary."""
import csv
import os
import re

import av
import numpy as np
import pytest
import tensorflow as tf

from components.preprocess.clip_decoder import decode_clip
from pipeline import cli
from pipeline.demo_data import CLASSES, COLOURS, DURATION_S, make_demo_data
from mbt_keras import contract

CLIPS = 12


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo"))
    assert cli.main(["make-demo-data", out, "--clips", str(CLIPS), "--seed", "3"]) == 0
    with open(os.path.join(out, "labels.csv")) as f:
        return out, list(csv.DictReader(f))


def test_labels_class_map_and_formats_vary(demo):
    out, rows = demo
    assert len(rows) == CLIPS and {r["labels"] for r in rows} == set(CLASSES)
    with open(os.path.join(out, "class_map.csv")) as f:
        assert [r["name"] for r in csv.DictReader(f)] == list(CLASSES)
    codecs, sizes, rates = set(), set(), set()
    for row in rows:
        with av.open(os.path.join(out, row["path"])) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            codecs.add((video.codec_context.name, audio.codec_context.name))
            sizes.add((video.codec_context.width, float(video.average_rate)))
            rates.add((audio.codec_context.sample_rate, audio.codec_context.layout.name))
            assert DURATION_S - 0.1 < container.duration / av.time_base < DURATION_S + 0.2
    assert codecs == {("h264", "aac"), ("vp9", "opus")}
    assert len(sizes) >= 3 and len(rates) >= 3


def test_same_seed_same_content(demo, tmp_path):
    out, rows = demo
    again = str(tmp_path / "again")
    assert make_demo_data(again, CLIPS, seed=3) == rows
    for row in rows[:3]:
        first = decode_clip(os.path.join(out, row["path"]))
        second = decode_clip(os.path.join(again, row["path"]))
        np.testing.assert_array_equal(first.frames, second.frames)
        np.testing.assert_allclose(first.waveform, second.waveform, atol=1e-6)


def _disc_colour(frames):
    """The brightest pixels' mean colour (the lit disc)."""
    flat = frames.reshape(-1, 3).astype(float)
    return flat[flat.sum(1) >= np.percentile(flat.sum(1), 95)].mean(0)


def _dominant_hz(waveform):
    spectrum = np.abs(np.fft.rfft(waveform[:16000]))
    return np.argmax(spectrum[20:]) + 20


def test_cues_follow_the_class_design(demo):
    out, rows = demo
    for row in rows:
        clip = decode_clip(os.path.join(out, row["path"]), short_side=96)
        colour = _disc_colour(clip.frames)
        nearest = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - colour).sum())
        label = row["labels"]
        if label.startswith("visual_"):
            assert nearest == label.split("_")[1]
        elif label.startswith("audio_"):
            assert nearest == "grey"
        else:
            hz = _dominant_hz(clip.waveform)
            high = abs(hz - 2000) < 20
            assert high or abs(hz - 300) < 20
            assert (label == "av_match") == ((nearest, high) in (("red", True), ("blue", False)))


def test_preprocess_cli_with_two_worker_processes_writes_splits_and_summary(demo, tmp_path,
                                                                            capsys):
    """The DirectRunner in multi_processing mode: the same job a cluster runner would run."""
    out, rows = demo
    dest = str(tmp_path / "records")
    code = cli.main(["preprocess", "--labels", os.path.join(out, "labels.csv"), "--videos", out,
                     "--out", dest, "--short-side", "64", "--quiet",
                     "--workers", "2", "--processes", "--compression", "gzip"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"read {CLIPS} = written {CLIPS} + rejected 0" in printed
    files = tf.io.gfile.glob(os.path.join(dest, "Split-train", "*.gz"))
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP"))
    assert len(records) == sum(r["split"] == "train" for r in rows)
    example = tf.train.SequenceExample.FromString(records[0].numpy())
    # One feature per second of audio (100 log-mel frames each).
    assert len(example.feature_lists.feature_list[contract.MELSPEC].feature) == int(DURATION_S)


def test_the_clip_the_readme_queries_is_one_the_demo_writes(tmp_path):
    """The README's `mbt predict demo_out/data/videos/clip_NNNN.EXT` commands name a file
    `make demo` (seed 0) writes: the demo draws each clip's container."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    named = set(re.findall(r"demo_out/data/(videos/clip_\d{4}\.\w+)", readme))
    assert named
    rows = make_demo_data(str(tmp_path), clips=1 + max(int(n[12:16]) for n in named), seed=0)
    assert named <= {row["path"] for row in rows}
