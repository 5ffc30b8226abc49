"""`mbt predict` on a real clip, in-process and through a real server."""
import re

from pipeline.cli import main
from serving.client import clip_inputs, format_top_k, predict_saved_model
from tests.serving.conftest import CLASS_NAMES, CLIP


def _top_k_lines(text):
    return [(float(score), name) for score, name in re.findall(r"^\s*([0-9.]+)\s+(\S+)$", text, re.M)]


def test_predict_prints_the_same_top_k_from_a_saved_model_and_from_the_server(
        server, exported, capsys):
    target, _ = server
    window = ["--num-frames", "4", "--seconds", "2"]
    assert main(["predict", CLIP, "--saved-model", exported[1], *window]) == 0
    local = capsys.readouterr().out
    assert main(["predict", CLIP, "--server", target, "--model", "mbt", *window]) == 0
    remote = capsys.readouterr().out
    expected = format_top_k(predict_saved_model(exported[1], clip_inputs(CLIP, num_frames=4,
                                                                       seconds=2.0)))
    assert _top_k_lines(local) == _top_k_lines(expected)
    scores = [score for score, _ in _top_k_lines(local)]
    assert scores == sorted(scores, reverse=True)
    assert sorted(name for _, name in _top_k_lines(local)) == sorted(CLASS_NAMES)
    assert re.search(r"mbt version 1 at 127\.0\.0\.1:\d+", remote)
    assert _top_k_lines(remote) == _top_k_lines(local)


def test_predict_reports_an_unreadable_video_and_an_unknown_model(server, tmp_path, capsys):
    target, _ = server
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert main(["predict", str(broken), "--server", target]) == 2
    assert f"mbt predict: error: not a video file: {broken}" in capsys.readouterr().err
    assert main(["predict", CLIP, "--server", target, "--model", "nope", "--seconds", "1"]) == 2
    assert "NOT_FOUND: model 'nope' not found" in capsys.readouterr().err
