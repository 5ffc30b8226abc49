"""`mbt infer` on real folders and listings of good and broken videos with an exported
mbt-micro model: accounting, dead letters, and the same scores as `mbt predict`."""
import contextlib
import glob
import io
import json
import os
import re

import numpy as np
import pytest

from pipeline.cli import main
from serving.client import clip_inputs
from tests.components.conftest import write_clip
from tests.serving.conftest import CLASS_NAMES, export_micro

WINDOW = ["--num-frames", "4", "--seconds", "2"]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A folder of videos as users have them: good ones, one without audio, broken ones and
    a file that is no video at all, plus an exported model."""
    root = tmp_path_factory.mktemp("library")
    videos = root / "videos"
    (videos / "sub").mkdir(parents=True)
    good = write_clip(str(videos / "good.mp4"), 3.0)
    write_clip(str(videos / "sub" / "beeps.mp4"), 2.5, audio_hz=1000.0, fps=25)
    write_clip(str(videos / "quiet.mp4"), 2.0, with_audio=False)
    data = open(good, "rb").read()
    (videos / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (videos / "notes.avi").write_text("these are meeting notes, not a video\n" * 20)
    (videos / "README.txt").write_text("not a video either, and skipped by extension\n")
    model = export_micro(str(root / "model"), seed=3)
    return root, str(videos), model


def _run(capsys, *argv):
    code = main(["infer", *argv, "--workers", "1"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rows(out):
    return [json.loads(line) for path in sorted(glob.glob(os.path.join(out, "predictions-*.jsonl")))
            for line in open(path)]


def _letters(out):
    return {letter["item"]["clip_id"]: letter
            for path in glob.glob(os.path.join(out, "DeadLetters", "dead_letters-*.jsonl"))
            for letter in map(json.loads, open(path))}


@pytest.fixture(scope="module")
def folder_run(library, tmp_path_factory):
    """(exit status, stdout, out folder) of `mbt infer --videos` on the library, run once."""
    _, videos, model = library
    out = str(tmp_path_factory.mktemp("infer") / "out")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["infer", "--videos", videos, "--model", model, "--out", out, *WINDOW,
                     "--workers", "2"])
    return code, stdout.getvalue(), out


def test_infer_accounts_for_every_video_of_a_folder(folder_run):
    code, printed, out = folder_run
    assert code == 0, printed
    assert "listed 5 videos under" in printed and "skipped 1 other files (.txt 1" in printed
    assert "read 5 = predicted 3 + rejected 2" in printed
    assert "rejected corrupt: 1" in printed and "rejected not_a_video: 1" in printed
    assert re.search(r"\[predicted\] .*quiet\.mp4: \S+ [0-9.]+ \(1 window\(s\)\)  \(no audio: "
                     r"predicted on silence\)", printed)
    letters = _letters(out)
    assert letters["truncated.mp4"]["kind"] == "corrupt"
    assert letters["notes.avi"]["kind"] == "not_a_video"
    assert "notes.avi" in letters["notes.avi"]["reason"]
    counts = json.load(open(os.path.join(out, "DeadLetters", "counts-infer.json")))
    assert counts == {"rows": 5, "read": 5, "written": 3, "rejected": 2,
                      "rejected_by_kind": {"corrupt": 1, "not_a_video": 1}}
    assert sorted(os.listdir(os.path.dirname(out))) == ["out"]  # no temporary folder left


def test_infer_rows_equal_mbt_predict_on_the_same_file(folder_run, library, capsys):
    import tensorflow as tf
    _, _, out = folder_run
    _, videos, model = library
    rows = {row["id"]: row for row in _rows(out)}
    assert sorted(rows) == ["good.mp4", "quiet.mp4", "sub/beeps.mp4"]
    assert rows["quiet.mp4"]["has_audio"] is False and rows["good.mp4"]["has_audio"] is True
    # What `mbt predict --saved-model` computes (serving.client.predict_saved_model), loaded once.
    signature = tf.saved_model.load(model).signatures["serving_default"]
    for video_id, row in rows.items():
        path = os.path.join(videos, video_id)
        assert row["path"] == path
        inputs = clip_inputs(path, num_frames=4, seconds=2.0)
        expected = signature(**{k: tf.constant(v) for k, v in inputs.items()})
        np.testing.assert_allclose([row["scores"][name] for name in CLASS_NAMES],
                                   expected["scores"].numpy()[0], rtol=1e-6)
        assert [entry["label"] for entry in row["top_k"]] == \
            [name.decode() for name in expected["top_k_names"].numpy()[0]]
    for video_id in ("good.mp4", "quiet.mp4"):
        assert main(["predict", os.path.join(videos, video_id), "--saved-model", model,
                     *WINDOW]) == 0
        printed = re.findall(r"^\s*([0-9.]+)\s+(\S+)$", capsys.readouterr().out, re.M)
        assert printed == [(f"{entry['score']:.4f}", entry["label"])
                           for entry in rows[video_id]["top_k"]]
    # The centred 2 s window of each clip (the container declares ~3.0, ~2.5 and ~2.0 s).
    assert rows["good.mp4"]["start"] == pytest.approx(0.5, abs=0.05)
    assert rows["sub/beeps.mp4"]["end"] - rows["sub/beeps.mp4"]["start"] == pytest.approx(2.0)
    assert rows["quiet.mp4"]["start"] == pytest.approx(0.0, abs=0.05)


def test_infer_from_a_listing_reports_missing_and_duplicate_lines(library, tmp_path, capsys):
    _, videos, model = library
    listing = tmp_path / "listing.txt"
    listing.write_text(f"# to classify\n{videos}/good.mp4\n\n{videos}/./good.mp4\n"
                       f"missing.mp4\n{videos}/sub/beeps.mp4\n")
    out = str(tmp_path / "out")
    code, printed, _ = _run(capsys, "--listing", str(listing), "--model", model, "--out", out,
                            *WINDOW)
    assert code == 0
    assert "read 4 = predicted 2 + rejected 2" in printed
    letters = _letters(out)
    duplicate = letters[f"{videos}/./good.mp4"]
    assert duplicate["kind"] == "duplicate"
    assert duplicate["reason"].startswith(f"{listing}:4 ({videos}/./good.mp4): duplicate of "
                                          f"row {listing}:2 ({videos}/good.mp4): same source")
    missing = letters["missing.mp4"]
    assert missing["kind"] == "missing_file" and missing["reason"].startswith(f"{listing}:5 ")
    assert sorted(row["row"] for row in _rows(out)) == [f"{listing}:2", f"{listing}:6"]


def test_infer_refuses_a_used_out_and_replaces_it_whole_with_overwrite(library, tmp_path,
                                                                       capsys):
    _, videos, model = library
    out = tmp_path / "out"
    (out / "DeadLetters").mkdir(parents=True)
    (out / "predictions-00000-of-00003.jsonl").write_text('{"id": "from another run"}\n')
    (out / "DeadLetters" / "dead_letters-infer-00000-of-00001.jsonl").write_text("{}\n")
    listing = tmp_path / "listing.txt"
    listing.write_text(f"{videos}/good.mp4\n")
    code, _, err = _run(capsys, "--listing", str(listing), "--model", model, "--out", str(out),
                        *WINDOW)
    assert code == 2  # the last line: the model's window warnings come first
    assert err.strip().splitlines()[-1] == (
        f"mbt infer: error: --out {out} is not empty (2 entries, e.g. DeadLetters): writing "
        "beside another run would mix their files; pass --overwrite to replace it whole, or "
        "choose an empty --out")
    assert (out / "predictions-00000-of-00003.jsonl").exists()
    code, printed, _ = _run(capsys, "--listing", str(listing), "--model", model, "--out",
                            str(out), *WINDOW, "--overwrite")
    assert code == 0 and "read 1 = predicted 1 + rejected 0" in printed
    assert [row["id"] for row in _rows(str(out))] == [f"{videos}/good.mp4"]
    assert not (out / "predictions-00000-of-00003.jsonl").exists()
    assert _letters(str(out)) == {}
    assert sorted(os.listdir(tmp_path)) == ["listing.txt", "out"]


def test_infer_names_a_missing_model_or_folder_in_one_line(library, tmp_path, capsys):
    _, videos, model = library
    code, _, err = _run(capsys, "--videos", videos, "--model", str(tmp_path), "--out",
                        str(tmp_path / "out"))
    assert code == 2
    assert err == (f"mbt infer: error: --model {tmp_path} is no exported MBT SavedModel: it "
                   "has no saved_model.pb\n")
    code, _, err = _run(capsys, "--videos", str(tmp_path / "nope"), "--model", model, "--out",
                        str(tmp_path / "out"))
    assert code == 2 and err == f"mbt infer: error: --videos {tmp_path / 'nope'}: no such folder\n"
    assert not (tmp_path / "out").exists()


def test_infer_lists_a_bucket_folder_in_the_job_and_reads_its_videos_from_there(library,
                                                                                tmp_path, capsys):
    """A gs:// folder (TensorFlow's ram:// stands in; it lives in this process, so one worker):
    the folder is listed by the job, not the launcher, and its videos are read through
    tf.io.gfile; a missing bucket folder is one line before the job."""
    import tensorflow as tf
    _, videos, model = library
    bucket = f"ram://infer_bucket_{os.getpid()}/videos"
    tf.io.gfile.makedirs(bucket + "/sub")
    tf.io.gfile.copy(os.path.join(videos, "good.mp4"), bucket + "/good.mp4")
    tf.io.gfile.copy(os.path.join(videos, "sub", "beeps.mp4"), bucket + "/sub/beeps.mp4")
    tf.io.gfile.copy(os.path.join(videos, "README.txt"), bucket + "/README.txt")
    out = str(tmp_path / "out")
    code, printed, _ = _run(capsys, "--videos", bucket, "--model", model, "--out", out, *WINDOW)
    assert code == 0, printed
    assert f"listed 2 videos under {bucket}; skipped 1 other files (.txt 1" in printed
    assert "read 2 = predicted 2 + rejected 0" in printed
    assert sorted(row["id"] for row in _rows(out)) == ["good.mp4", "sub/beeps.mp4"]
    code, _, err = _run(capsys, "--videos", bucket + "_nope", "--model", model, "--out",
                        str(tmp_path / "out2"))
    assert code == 2 and err == f"mbt infer: error: --videos {bucket}_nope: no such folder\n"


def test_infer_timeline_uses_the_models_window_and_equals_mbt_predict_timeline(library, tmp_path,
                                                                               capsys):
    """No window flags: the model's contract decides (mbt-micro: 2 frames over 0.96 s); with
    --timeline every window of the video is a row, the rows `serving.timeline` gives."""
    from serving import client, model_contract, timeline
    _, videos, model = library
    listing = tmp_path / "videos.txt"
    listing.write_text(os.path.join(videos, "good.mp4") + "\n")
    out = str(tmp_path / "out")
    code, printed, err = _run(capsys, "--listing", str(listing), "--model", model, "--out", out,
                              "--timeline", "--batch-size", "3")
    assert code == 0, printed + err
    assert "warning" not in err
    window = model_contract.from_saved_model(model)
    expected = list(timeline.classify(
        timeline.windows(os.path.join(videos, "good.mp4"), num_frames=window.num_frames,
                         seconds=window.window_seconds),
        client.load_saved_model(model), batch_size=3))
    rows = sorted(_rows(out), key=lambda row: row["start"])
    assert len(rows) == len(expected) >= 4  # a 3 s clip in 0.96 s windows, plus the tail
    for row, want in zip(rows, expected):
        assert row["start"] == pytest.approx(want.start, abs=1e-3)
        assert row["end"] == pytest.approx(want.end, abs=1e-3)
        np.testing.assert_allclose([row["scores"][name] for name in CLASS_NAMES], want.scores,
                                   rtol=1e-5, atol=1e-6)
    assert rows[-1]["end"] == pytest.approx(3.0, abs=0.05)
