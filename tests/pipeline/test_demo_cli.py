"""`mbt demo`'s guard on its folder (checked before any work) and its verdict per class group."""
import json
import math
import os

import pytest

from pipeline import cli, demo_cli


def _stamped(folder, **changes):
    os.makedirs(folder / "data")
    (folder / "data" / "labels.csv").write_text("clip_id,path,labels,split\n")
    (folder / demo_cli.STAMP).write_text(json.dumps({**demo_cli.stamp(), **changes}))
    return folder


@pytest.mark.parametrize("changes, made_by", [
    ({"tfx": "0.1.0", "tensorflow": "2.0.0"}, "TFX 0.1.0, TensorFlow 2.0.0"),
    ({"format": 1}, "demo format 1 on"),
])
def test_demo_refuses_a_folder_of_another_stack_or_format_in_one_line(tmp_path, capsys, changes,
                                                                      made_by):
    out = _stamped(tmp_path / "demo_out", **changes)
    before = sorted(os.listdir(out))
    assert cli.main(["demo", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and str(out) in error and made_by in error
    assert "--overwrite" in error
    assert sorted(os.listdir(out)) == before  # refused before any work


def test_demo_refuses_a_folder_without_a_stamp(tmp_path, capsys):
    out = tmp_path / "demo_out"
    out.mkdir()
    (out / "metadata.sqlite").write_text("")
    assert cli.main(["demo", "--out", str(out)]) == 2
    assert f"an older demo (no readable {demo_cli.STAMP})" in capsys.readouterr().err


def test_overwrite_empties_a_foreign_folder_and_a_matching_one_is_kept(tmp_path):
    out = _stamped(tmp_path / "demo_out", tfx="0.1.0")
    demo_cli.prepare_out(str(out), overwrite=True)
    assert os.listdir(out) == [demo_cli.STAMP]
    assert json.loads((out / demo_cli.STAMP).read_text()) == demo_cli.stamp()
    (out / "data").mkdir()
    demo_cli.prepare_out(str(out), overwrite=False)  # this stack's folder: reused
    assert sorted(os.listdir(out)) == sorted(["data", demo_cli.STAMP])


def test_verdict_says_per_group_whether_every_class_reached_the_bar():
    names = ["visual_green", "visual_yellow", "audio_beeps", "audio_sweep", "av_match",
             "av_mismatch"]
    groups = {"visual_green": "visual only", "visual_yellow": "visual only",
              "audio_beeps": "audio only", "audio_sweep": "audio only",
              "av_match": "relation", "av_mismatch": "relation"}
    ap = {0: 1.0, 1: 0.95, 2: 1.0, 3: math.nan, 4: 0.97, 5: 0.951}
    assert demo_cli.verdict_lines(ap, names, groups) == [
        "visual only (visual_green, visual_yellow): AP 1.00 / 0.95 - solved: the frames alone "
        "decide it",
        "audio only (audio_beeps, audio_sweep): AP 1.00 / nan - not solved (every class needs "
        "AP >= 0.9)",
        "relation (av_match, av_mismatch): AP 0.97 / 0.95 - solved: only fusion inside the "
        "model can do this"]
