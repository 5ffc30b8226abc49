"""Windowed decoding and the timeline of a whole video, on a real three-minute clip."""
import csv
import json
import re
import tracemalloc

import numpy as np
import pytest

from components.preprocess.clip_decoder import decode_chunks, decode_clip
from mbt_keras import contract, windows
from mbt_keras.config import from_preset
from pipeline.cli import main
from serving import timeline
from serving.client import load_saved_model, read_window
from tests.components.conftest import write_clip
from tests.serving.conftest import CLASS_NAMES, CLIP

CONFIG = from_preset("mbt-micro")
SECONDS = CONFIG.spec_frames / contract.SPEC_FRAMES_PER_SECOND  # the model's window, 0.96 s
LONG = 180.0


def test_a_window_near_the_end_decodes_only_its_neighbourhood(long_clip):
    window = decode_clip(long_clip, start=170.0, end=172.0)
    whole = sum(chunk.packets_read for chunk in decode_chunks(long_clip, chunk_seconds=30))
    # A keyframe every 2 s: the window, its preroll and at most one GOP before it.
    assert window.packets_read < 0.03 * whole, (window.packets_read, whole)
    assert window.frames.shape[0] == 50 and window.waveform.shape == (32000,)
    # Source frame k has brightness 8k mod 256: the window starts at frame 1700.
    assert window.frames[0].mean() == pytest.approx(8 * 1700 % 256, abs=3)
    assert window.frames[25].mean() == pytest.approx(8 * 1710 % 256, abs=3)


def test_decode_chunks_join_into_the_whole_clip():
    whole = decode_clip(CLIP, short_side=32)
    chunks = list(decode_chunks(CLIP, chunk_seconds=0.7, short_side=32))
    assert [c.start for c in chunks] == pytest.approx([k * 0.72 for k in range(len(chunks))])
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]), whole.frames)
    np.testing.assert_array_equal(np.concatenate([c.waveform for c in chunks]), whole.waveform)


@pytest.fixture(scope="module")
def long_timeline(long_clip, exported):
    predict = load_saved_model(exported[1])
    rows = list(timeline.classify(timeline.windows(
        long_clip, num_frames=CONFIG.num_frames, seconds=SECONDS, hop=2.0), predict, 16))
    return rows, predict


def test_timeline_covers_the_video_in_order_with_the_rule_s_windows(long_timeline):
    rows, _ = long_timeline
    starts = windows.starts(LONG, SECONDS, 2.0, contract.FPS)
    # 90 windows every 2 s (0-178 s), then one more that ends with the video.
    assert len(starts) == 91 and [r.start for r in rows] == pytest.approx(starts)
    assert rows[-2].start == 178.0 and rows[-1].start == pytest.approx(LONG - SECONDS)
    assert all(r.end == pytest.approx(r.start + SECONDS) for r in rows)
    assert rows[-1].end == pytest.approx(LONG)
    assert all(r.has_audio for r in rows)


def test_timeline_scores_equal_single_window_predictions(long_timeline, long_clip):
    rows, predict = long_timeline
    for row in (rows[0], rows[1], rows[45], rows[-1]):
        alone = predict(read_window(long_clip, num_frames=CONFIG.num_frames, seconds=SECONDS,
                                    start=row.start).inputs)
        np.testing.assert_allclose(row.scores, alone[contract.OUT_SCORES][0], rtol=1e-5,
                                   atol=1e-6, err_msg=f"window at {row.start} s")


def test_timeline_memory_does_not_grow_with_the_video(long_clip, tmp_path):
    def peak(path):
        tracemalloc.start()
        for _ in timeline.windows(path, num_frames=2, seconds=2.0, decoder_threads=1):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top
    short = write_clip(str(tmp_path / "short.mp4"), 20.0, fps=10, rate=16000, layout="mono")
    # 180 s at 25 fps of 341x256 RGB would be 1.2 GB; the timeline holds a few windows.
    assert peak(long_clip) < 1.5 * peak(short) + (2 << 20)
    assert peak(long_clip) < 64 << 20


def test_timeline_cli_writes_csv_json_and_plot_and_a_summary(long_clip, exported, tmp_path,
                                                              capsys):
    window = ["--num-frames", str(CONFIG.num_frames), "--seconds", str(SECONDS)]
    assert main(["predict", long_clip, "--saved-model", exported[1], *window, "--timeline",
                 "--hop", "10", "--out", str(tmp_path / "t.json"),
                 "--plot", str(tmp_path / "t.png")]) == 0
    out = capsys.readouterr().out
    assert "windows, 0.0-" in out and "top in" in out and "wrote 19 rows" in out
    document = json.loads((tmp_path / "t.json").read_text())
    assert document["classes"] == CLASS_NAMES and len(document["windows"]) == 19
    first = document["windows"][0]
    assert first["has_audio"] is True and len(first["scores"]) == len(CLASS_NAMES)
    assert first["top_k"][0]["score"] == pytest.approx(max(first["scores"]), rel=1e-5)
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["predict", long_clip, "--saved-model", exported[1], *window, "--timeline",
                 "--hop", "10", "--out", str(tmp_path / "t.csv")]) == 0
    with open(tmp_path / "t.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [float(r["start"]) for r in table] == pytest.approx(
        [w["start"] for w in document["windows"]])
    assert [r["label_1"] for r in table] == [w["top_k"][0]["label"] for w in document["windows"]]


def test_a_clip_without_audio_is_said(exported, tmp_path, capsys):
    window = ["--num-frames", str(CONFIG.num_frames), "--seconds", str(SECONDS)]
    assert main(["predict", media_silent(tmp_path), "--saved-model", exported[1], *window]) == 0
    assert "no audio track" in capsys.readouterr().out
    assert main(["predict", media_silent(tmp_path), "--saved-model", exported[1], *window,
                 "--timeline", "--out", str(tmp_path / "s.json")]) == 0
    assert "no audio track" in capsys.readouterr().out
    rows = json.loads((tmp_path / "s.json").read_text())["windows"]
    assert rows and not any(r["has_audio"] for r in rows)


def media_silent(tmp_path):
    path = tmp_path / "silent.mp4"
    if not path.exists():
        write_clip(str(path), 3.0, with_audio=False)
    return str(path)


def test_timeline_through_a_server_equals_the_saved_model(server, exported, tmp_path, capsys):
    target, _ = server
    window = ["--num-frames", str(CONFIG.num_frames), "--seconds", str(SECONDS), "--timeline",
              "--hop", "0.5", "--batch-size", "3"]
    assert main(["predict", CLIP, "--server", target, *window,
                 "--out", str(tmp_path / "served.csv")]) == 0
    assert re.search(r"mbt version 1 at", capsys.readouterr().out)
    assert main(["predict", CLIP, "--saved-model", exported[1], *window,
                 "--out", str(tmp_path / "local.csv")]) == 0
    tables = []
    for name in ("served.csv", "local.csv"):
        with open(tmp_path / name, newline="") as f:
            tables.append(list(csv.DictReader(f)))
    served, local = tables
    assert len(served) == len(windows.starts(5.28, SECONDS, 0.5, contract.FPS)) == 10
    for a, b in zip(served, local):
        assert (a["start"], a["label_1"]) == (b["start"], b["label_1"])
        assert float(a["score_1"]) == pytest.approx(float(b["score_1"]), abs=1e-6)
