"""Label-file parsers: every format, unknown labels and malformed rows become rejected items."""
import json

import pytest

from components.preprocess.label_files import (class_names, parse_label_file, read_class_groups,
                                               read_class_map, write_class_map)
from components.preprocess.splits import assign_split

AUDIOSET_INDICES = """index,mid,display_name
0,/m/09x0r,Speech
1,/m/04rlf,Music
2,/m/0bt9lr,"Dog, bark"
"""
AUDIOSET_SEGMENTS = """# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/0bt9lr"
--ZhevVpy1s, 50.000, 60.000, "/m/04rlf"
--aE2O5G5WE, 0.000, 10.000, "/m/0zzzzz"
"""


def test_generic_csv_resolves_paths_and_splits_labels(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "path,labels,start,end,split\n"
        "a.mp4,dog;cat,1.5,4,train\n"
        "gs://bucket/b.webm,cat,,,eval\n"
        "/abs/c.mp4,bird|dog,,,\n")
    records, class_map = parse_label_file(str(tmp_path / "labels.csv"), "/videos")
    assert class_map == {"bird": 0, "cat": 1, "dog": 2}
    a, b, c = records
    assert (a.clip_id, a.uri, a.labels, a.start, a.end, a.split, a.error) == (
        "a_1500_4000", "/videos/a.mp4", ("dog", "cat"), 1.5, 4.0, "train", None)
    assert (b.uri, b.start, b.end, b.split) == ("gs://bucket/b.webm", None, None, "eval")
    assert (c.uri, c.labels, c.split) == ("/abs/c.mp4", ("bird", "dog"), None)


def test_generic_jsonl_with_class_map_rejects_unknown_labels_and_bad_lines(tmp_path):
    write_class_map({"dog": 0, "cat": 1}, str(tmp_path / "class_map.csv"))
    lines = [json.dumps({"uri": "x.mp4", "labels": ["cat"], "clip_id": "x1", "split": "train"}),
             json.dumps({"uri": "y.mp4", "labels": ["unicorn"]}),
             "{not json",
             json.dumps({"labels": ["cat"]})]
    (tmp_path / "labels.jsonl").write_text("\n".join(lines) + "\n")
    records, class_map = parse_label_file(str(tmp_path / "labels.jsonl"), str(tmp_path),
                                          class_map_path=str(tmp_path / "class_map.csv"))
    assert class_map == {"dog": 0, "cat": 1}
    assert records[0].error is None and records[0].clip_id == "x1"
    assert "unknown label(s) ['unicorn']" in records[1].error and "y.mp4" in records[1].error
    assert records[2].error.startswith("malformed row") and "labels.jsonl:3" in records[2].error
    assert "no 'path' or 'uri'" in records[3].error


def test_audioset_segments_with_class_indices(tmp_path):
    (tmp_path / "indices.csv").write_text(AUDIOSET_INDICES)
    (tmp_path / "segments.csv").write_text(AUDIOSET_SEGMENTS)
    records, class_map = parse_label_file(str(tmp_path / "segments.csv"), "/v", "audioset",
                                          class_map_path=str(tmp_path / "indices.csv"))
    assert class_map == {"Speech": 0, "Music": 1, "Dog, bark": 2}
    first = records[0]
    assert (first.clip_id, first.uri, first.labels, first.start, first.end) == (
        "--PJHxphWEs_30000_40000", "/v/--PJHxphWEs.mp4", ("Speech", "Dog, bark"), 30.0, 40.0)
    assert records[1].labels == ("Music",) and records[1].error is None
    assert "unknown label(s) ['/m/0zzzzz']" in records[2].error


def test_vggsound_presegmented_template(tmp_path):
    (tmp_path / "vggsound.csv").write_text("---g-f_I2yQ,1,people marching,test\n"
                                           "--0PQM4-hqg,30,waterfall burbling,train\n"
                                           "broken,row\n")
    records, class_map = parse_label_file(str(tmp_path / "vggsound.csv"), "/v", "vggsound",
                                          video_template="{ytid}_{start:06d}.mp4",
                                          presegmented=True)
    assert class_map == {"people marching": 0, "waterfall burbling": 1}
    assert records[0].uri == "/v/---g-f_I2yQ_000001.mp4" and records[0].start is None
    assert records[1].split == "train" and records[1].labels == ("waterfall burbling",)
    assert records[2].error.startswith("malformed row")


def test_splits_from_label_file_else_stable_hash(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "path,labels,split\n" + "".join(f"c{i}.mp4,a,\n" for i in range(200))
        + "t.mp4,a,test\nq.mp4,a,holdout\n")
    records, _ = parse_label_file(str(tmp_path / "labels.csv"), "/v")
    out = [assign_split(r, {"train": 3, "eval": 1}) for r in records]
    hashed = [r.split for r in out[:200]]
    assert 0.6 < hashed.count("train") / 200 < 0.9 and set(hashed) == {"train", "eval"}
    assert [assign_split(r, {"train": 3, "eval": 1}) for r in records[:200]] == out[:200]
    assert out[200].split == "eval" and out[200].error is None
    assert "split 'holdout'" in out[201].error


def test_class_map_round_trip_with_commas(tmp_path):
    write_class_map({"Dog, bark": 1, "Speech": 0}, str(tmp_path / "m.csv"))
    assert read_class_map(str(tmp_path / "m.csv")) == {"Speech": 0, "Dog, bark": 1}


def test_unknown_format_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="fmt='kinetics'"):
        parse_label_file(str(tmp_path / "x.csv"), "/v", "kinetics")


def test_windows_of_one_source_get_distinct_ids_stable_across_runs(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "path,labels,start,end\n"
        + "".join(f"films/film.mp4,dog,{10 * k},{10 * k + 10}\n" for k in range(59))
        + "films/film.mp4,dog,,\nother/film.mp4,cat,,\nfilms/film.mp4,dog,590,\n")
    records, _ = parse_label_file(str(tmp_path / "labels.csv"), "/v")
    ids = [r.clip_id for r in records]
    assert all(r.error is None for r in records), [r.error for r in records if r.error]
    assert len(set(ids)) == len(ids) == 62
    assert ids[:2] == ["films/film_0_10000", "films/film_10000_20000"]
    assert ids[59:] == ["films/film", "other/film", "films/film_590000_end"]
    assert [r.row for r in records[:2]] == [f"{tmp_path}/labels.csv:2", f"{tmp_path}/labels.csv:3"]
    again, _ = parse_label_file(str(tmp_path / "labels.csv"), "/v")
    assert [r.clip_id for r in again] == ids


def test_duplicate_rows_are_rejected_naming_both_rows(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,labels,start,end,clip_id\n"
                      "a.mp4,dog,0,10,\n"      # line 2
                      "a.mp4,cat,10,20,\n"     # line 3: another window, kept
                      "a.mp4,cat,0,10,\n"      # line 4: same source and window as line 2
                      "b.mp4,dog,,,a_10000_20000\n")  # line 5: the id of line 3
    records, _ = parse_label_file(str(labels), "/v")
    assert [r.error_kind for r in records] == [None, None, "duplicate", "duplicate"]
    assert records[2].error == (f"duplicate of row {labels}:2 (a_0_10000): same source and "
                                "window, /v/a.mp4 [0.0, 10.0); only the first row is kept")
    assert records[2].row == f"{labels}:4"
    assert f"duplicate of row {labels}:3 (a_10000_20000): same clip id" in records[3].error


def test_a_non_utf8_label_file_is_one_clear_error_or_read_with_its_encoding(tmp_path):
    from components.preprocess.label_files import LabelFileError
    labels = tmp_path / "labels.csv"
    labels.write_bytes("path,labels\nok.mp4,dog\ncaf\u00e9.mp4,cat\n".encode("latin-1"))
    with pytest.raises(LabelFileError) as error:
        parse_label_file(str(labels), "/v")
    assert str(error.value) == (f"{labels}:3: byte 0xe9 at column 4 is not valid utf-8; pass "
                                "the file's encoding (e.g. --encoding latin-1)")
    records, _ = parse_label_file(str(labels), "/v", encoding="latin-1")
    assert [r.uri for r in records] == ["/v/ok.mp4", "/v/caf\u00e9.mp4"]
    with pytest.raises(LabelFileError, match="unknown encoding 'klingon'"):
        parse_label_file(str(labels), "/v", encoding="klingon")
    with pytest.raises(LabelFileError, match="cannot read .*missing.csv"):
        parse_label_file(str(tmp_path / "missing.csv"), "/v")


def test_a_byte_order_mark_does_not_hide_the_header(tmp_path):
    (tmp_path / "labels.csv").write_bytes("path,labels\na.mp4,dog\n".encode("utf-8-sig"))
    records, _ = parse_label_file(str(tmp_path / "labels.csv"), "/v")
    assert records[0].error is None and records[0].uri == "/v/a.mp4"


def test_class_names_keep_each_name_at_its_index_and_name_the_gaps():
    """One rule for the trainer, the schema's label bounds and `mbt report`: a map with a gap
    (indices 0 and 2) keeps "cat" at 2, so the label bound is 3 classes, not 2."""
    assert class_names({"dog": 0, "cat": 2}) == ["dog", "class_1", "cat"]
    assert class_names({"dog": 0, "cat": 2}, 4) == ["dog", "class_1", "cat", "class_3"]
    assert class_names({}) == []


def test_class_map_group_column_is_read_beside_names_and_indices(tmp_path):
    path = str(tmp_path / "class_map.csv")
    write_class_map({"red": 1, "tone": 0, "other": 2}, path, groups={"red": "visual only",
                                                                     "tone": "audio only"})
    assert (tmp_path / "class_map.csv").read_text() == (
        "index,name,group\n0,tone,audio only\n1,red,visual only\n2,other,\n")
    assert read_class_map(path) == {"tone": 0, "red": 1, "other": 2}
    assert read_class_groups(path) == {"tone": "audio only", "red": "visual only"}
    write_class_map({"dog": 0}, path)
    assert read_class_groups(path) == {}


@pytest.mark.parametrize("rows, line, problem", [
    ("1,dog\n2,cat\n3,bird\n", 4, "index 3 of class 'bird' is outside 0..2"),   # 1-based
    ("0,dog\n2,cat\n", 3, "index 2 of class 'cat' is outside 0..1"),            # a gap
    ("0,dog\n0,cat\n", 3, "index 0 of class 'cat' repeats row {path}:2"),
    ("0,dog\n1,dog\n", 3, "class 'dog' repeats row {path}:2"),
    ("0,dog\none,cat\n", 3, "index 'one' of class 'cat' is not an integer"),
    ("0,dog\n1,\n", 3, "no class name"),
])
def test_a_class_map_not_numbered_0_to_n_minus_1_is_refused_naming_its_first_bad_row(
        tmp_path, rows, line, problem):
    """The head has one output per row and the one-hot of an index outside 0..N-1 is all
    zeros: a 1-based or gappy map would drop a class without a word."""
    from components.preprocess.label_files import LabelFileError
    path = tmp_path / "class_map.csv"
    path.write_text("index,name\n" + rows)
    count = rows.count("\n")
    with pytest.raises(LabelFileError) as error:
        read_class_map(str(path))
    assert str(error.value) == (f"{path}:{line}: {problem.format(path=path)}; a class map of "
                                f"{count} classes numbers them 0..{count - 1}, each index and "
                                "name once")


def test_a_class_map_in_any_row_order_and_audiosets_indices_are_accepted(tmp_path):
    (tmp_path / "m.csv").write_text("index,name\n2,bird\n0,dog\n1,cat\n")
    assert read_class_map(str(tmp_path / "m.csv")) == {"dog": 0, "cat": 1, "bird": 2}
    (tmp_path / "indices.csv").write_text(AUDIOSET_INDICES)
    assert read_class_map(str(tmp_path / "indices.csv")) == {"Speech": 0, "Music": 1,
                                                               "Dog, bark": 2}


def test_windows_of_one_video_share_a_split_whatever_their_clip_ids(tmp_path):
    """Hashed by clip id, as before, the 40 windows of each film spread over both splits."""
    (tmp_path / "labels.csv").write_text(
        "path,labels,start,end\n"
        + "".join(f"films/film{f}.mp4,dog,{10 * k},{10 * k + 10}\n"
                  for f in range(10) for k in range(40)))
    records, _ = parse_label_file(str(tmp_path / "labels.csv"), "/v")
    splits = {}
    for record in records:
        record = assign_split(record, {"train": 3, "eval": 1})
        splits.setdefault(record.uri, set()).add(record.split)
    assert all(len(s) == 1 for s in splits.values()), splits
    assert set.union(*splits.values()) == {"train", "eval"}  # still both splits over films


def test_a_group_column_keeps_a_group_in_one_split_and_a_split_column_decides_first(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "path,labels,group,split\n"
        + "".join(f"p{p}/clip{c}.mp4,dog,participant{p},\n" for p in range(8) for c in range(10))
        + "p0/held_out.mp4,dog,participant0,eval\np0/kept.mp4,dog,participant0,train\n")
    records, _ = parse_label_file(str(tmp_path / "labels.csv"), "/v")
    out = [assign_split(r, {"train": 1, "eval": 1}) for r in records]
    by_group = {}
    for record in out[:80]:
        by_group.setdefault(record.group, set()).add(record.split)
    assert all(len(s) == 1 for s in by_group.values()) and len(by_group) == 8
    assert [r.split for r in out[80:]] == ["eval", "train"]


def test_audioset_segments_are_grouped_by_youtube_id_even_as_separate_files(tmp_path):
    (tmp_path / "indices.csv").write_text(AUDIOSET_INDICES)
    (tmp_path / "segments.csv").write_text("".join(
        f"yt{v:03d}, {10 * k}.000, {10 * k + 10}.000, \"/m/09x0r\"\n"
        for v in range(30) for k in range(6)))
    records, _ = parse_label_file(str(tmp_path / "segments.csv"), "/v", "audioset",
                                  class_map_path=str(tmp_path / "indices.csv"),
                                  video_template="{ytid}_{start}.mp4", presegmented=True)
    assert len({r.uri for r in records}) == 180 and {r.group for r in records[:6]} == {"yt000"}
    splits = {}
    for record in records:
        splits.setdefault(record.group, set()).add(assign_split(record, {"a": 1, "b": 1}).split)
    assert all(len(s) == 1 for s in splits.values())


def test_a_byte_past_the_checked_head_that_does_not_decode_rejects_only_its_row(tmp_path):
    """The launcher checks the first 64 KiB; the workers read the rest, where a stray byte
    must neither fail the job nor take other rows with it."""
    labels = tmp_path / "labels.csv"
    labels.write_bytes(("path,labels\n" + "".join(f"v{i:05d}.mp4,dog\n" for i in range(6000))
                        + "caf\u00e9.mp4,dog\nlast.mp4,dog\n").encode("latin-1"))
    assert labels.stat().st_size > 65536
    records, _ = parse_label_file(str(labels), "/v")
    assert len(records) == 6002 and [r.error for r in records[-1:]] == [None]
    bad = records[-2]
    assert (bad.row, bad.uri, bad.error_kind) == (f"{labels}:6002", "/v/caf\\xe9.mp4", None)
    assert bad.error == ("byte 0xe9 is not valid utf-8; pass the file's encoding "
                         "(e.g. --encoding latin-1)")
    assert all(r.error is None for r in records[:-2])


def test_a_class_map_without_rows_is_refused_naming_the_file(tmp_path):
    from components.preprocess.label_files import LabelFileError
    (tmp_path / "m.csv").write_text("index,name\n")
    with pytest.raises(LabelFileError, match=f"^{tmp_path}/m.csv has no classes"):
        read_class_map(str(tmp_path / "m.csv"))
