"""`mbt preprocess` as a user meets it: a used --out is refused or replaced whole,
a label file in another encoding is one clear line or read with --encoding, and so is a
class map not numbered 0..N-1."""
import glob
import json
import os

import pytest

from pipeline.cli import main
from tests.components.conftest import write_clip

FAST = ["--short-side", "32", "--workers", "1", "--quiet", "--splits", "train:1"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    write_clip(str(root / "caf\u00e9.mp4"), 2.0)
    (root / "broken.mp4").write_text("not a video\n")
    return root


def _letters(out):
    return [json.loads(line) for path in glob.glob(str(out / "DeadLetters" / "dead_letters-*"))
            for line in open(path)]


def test_a_used_out_is_refused_and_overwrite_replaces_it_whole(clips, tmp_path, capsys):
    labels, out = tmp_path / "labels.csv", tmp_path / "records"
    labels.write_text("path,labels,start,end\ncaf\u00e9.mp4,dog,0,1\nbroken.mp4,dog,,\n")
    argv = ["preprocess", "--labels", str(labels), "--videos", str(clips), "--out", str(out),
            *FAST]
    assert main(argv) == 0
    assert "read 2 = written 1 + rejected 1" in capsys.readouterr().out
    stale = out / "Split-train" / "data_tfrecord-00007-of-00009.gz"
    stale.write_bytes(b"a shard of an older run")
    before = sorted(p for p in glob.glob(str(out / "**"), recursive=True))

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mbt preprocess: error: --out {out} is not empty (")
    assert "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(glob.glob(str(out / "**"), recursive=True)) == before

    labels.write_text("path,labels,start,end\ncaf\u00e9.mp4,dog,0,1\ncaf\u00e9.mp4,dog,1,2\n")
    assert main(argv + ["--overwrite"]) == 0
    assert "read 2 = written 2 + rejected 0" in capsys.readouterr().out
    assert not stale.exists()
    assert _letters(out) == []   # the first run's dead letter is gone with it
    assert sorted(os.listdir(tmp_path)) == ["labels.csv", "records"]


def test_a_label_file_in_latin1_is_one_line_naming_it_or_read_with_encoding(clips, tmp_path,
                                                                           capsys):
    labels, out = tmp_path / "labels.csv", tmp_path / "records"
    labels.write_bytes("path,labels\nbroken.mp4,dog\ncaf\u00e9.mp4,dog\n".encode("latin-1"))
    argv = ["preprocess", "--labels", str(labels), "--videos", str(clips), "--out", str(out),
            *FAST]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"mbt preprocess: error: {labels}:3: byte 0xe9 at column 4 is not "
                            "valid utf-8; pass the file's encoding (e.g. --encoding latin-1)\n")
    assert not out.exists()
    assert main(argv + ["--encoding", "latin-1"]) == 0
    assert "read 2 = written 1 + rejected 1" in capsys.readouterr().out
    (letter,) = _letters(out)
    assert letter["reason"].startswith(f"{labels}:2 (broken): ")


def test_a_one_based_class_map_is_one_line_naming_its_row_before_any_job(clips, tmp_path,
                                                                         capsys):
    labels, class_map, out = tmp_path / "labels.csv", tmp_path / "class_map.csv", tmp_path / "o"
    labels.write_text("path,labels\ncaf\u00e9.mp4,dog\n")
    class_map.write_text("index,name\n1,dog\n2,cat\n")
    assert main(["preprocess", "--labels", str(labels), "--videos", str(clips), "--out",
                 str(out), "--class-map", str(class_map), *FAST]) == 2
    assert capsys.readouterr().err == (
        f"mbt preprocess: error: {class_map}:3: index 2 of class 'cat' is outside 0..1; a "
        "class map of 2 classes numbers them 0..1, each index and name once\n")
    assert not out.exists()
