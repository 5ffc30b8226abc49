"""The label file read by the workers (issue 32, item 4): the job graph holds its name, not its
rows, and the job writes what it wrote when the launcher parsed the rows into a beam.Create."""
import glob
import json

import apache_beam as beam
import pytest
import tensorflow as tf

from components.preprocess.label_files import (LabelSource, label_rows, parse_label_file,
                                               source_class_map, write_class_map)
from components.preprocess.read_labels import ReadRows
from components.preprocess.splits import assign_split
from components.preprocess.transform import (LabelFileToTFRecords, SplitToTFRecords,
                                             read_outcome)

BUCKETS = {"train": 1, "eval": 1}


def _collect(pipeline_fn, tmp_path):
    """Runs `pipeline_fn(pipeline)` -> PCollection[ClipRecord]; {row: record as JSON}."""
    out = str(tmp_path / "collected")
    with beam.Pipeline() as pipeline:
        _ = (pipeline_fn(pipeline) | beam.Map(lambda r: json.dumps(r._asdict(), sort_keys=True))
             | beam.io.WriteToText(out))
    records = [json.loads(line) for path in glob.glob(out + "*") for line in open(path)]
    return {record["row"]: record for record in records}


def test_workers_parse_the_rows_as_the_launcher_did_quotes_bom_duplicates_and_bad_rows(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_bytes((
        "path,labels,start,end,split,clip_id\n"
        'a.mp4,"dog,cat",0,10,,\n'            # a quoted cell with the separator
        'b.mp4,"dog;\ncat",,,eval,\n'         # a quoted newline: one row, lines 3-4
        "a.mp4,cat,0,10,,\n"                  # the window of line 2: duplicate
        "c.mp4,dog,,,,b\n"                    # the id of line 3: duplicate
        "d.mp4,unicorn,,,,\n"                 # unknown label
        "e.mp4,dog,x,,,\n"                    # malformed start
        "f.mp4,dog,,,holdout,\n"              # a split that is no output
        + "".join(f"g{i}.mp4,cat,,,,\n" for i in range(20))).encode("utf-8-sig"))
    write_class_map({"cat": 0, "dog": 1}, str(tmp_path / "class_map.csv"))
    source = LabelSource(str(labels), "/v", class_map=str(tmp_path / "class_map.csv"))
    expected, class_map = parse_label_file(str(labels), "/v",
                                           class_map_path=str(tmp_path / "class_map.csv"))
    expected = {r.row: json.loads(json.dumps(assign_split(r, BUCKETS)._asdict()))
                for r in expected}

    by_row = _collect(lambda p: p | ReadRows(label_rows, source, class_map)
                      | beam.Map(assign_split, BUCKETS), tmp_path)

    assert by_row == expected
    assert by_row[f"{labels}:2"]["labels"] == ["dog", "cat"]
    assert by_row[f"{labels}:4"]["labels"] == ["dog", "cat"]  # a row is named by its last line
    assert by_row[f"{labels}:5"]["error"].startswith(f"duplicate of row {labels}:2 (a_0_10000)")
    assert by_row[f"{labels}:6"]["error"].startswith(f"duplicate of row {labels}:4 (b)")
    assert [by_row[f"{labels}:{n}"]["error_kind"] for n in (7, 8)] == ["unknown_label", None]
    assert "split 'holdout'" in by_row[f"{labels}:9"]["error"]
    assert len(by_row) == 27


def test_the_job_graph_for_200000_rows_stays_under_1_mb_and_does_not_grow_with_rows(tmp_path):
    """Built with the rows in a beam.Create, as before, this graph was 3.3 MB."""
    labels = tmp_path / "labels.csv"
    class_map = {f"class_{i}": i for i in range(527)}
    write_class_map(class_map, str(tmp_path / "class_map.csv"))
    source = LabelSource(str(labels), str(tmp_path), class_map=str(tmp_path / "class_map.csv"))

    def graph_bytes(rows):
        with open(labels, "w") as f:
            f.write("path,labels,start,end\n")
            f.writelines(f"videos/v{i // 10:05d}.mp4,class_{i % 527},{i % 10 * 10},"
                         f"{i % 10 * 10 + 10}\n" for i in range(rows))
        pipeline = beam.Pipeline()
        _ = pipeline | LabelFileToTFRecords(
            source, source_class_map(source), BUCKETS,
            lambda split: str(tmp_path / split / "data_tfrecord"), str(tmp_path / "dead"))
        return len(pipeline.to_runner_api().SerializeToString())

    many = graph_bytes(200_000)
    assert many < 1_000_000
    assert abs(many - graph_bytes(10)) < 1000  # pickling varies by a few bytes, not by a row


@pytest.fixture(scope="module")
def both_jobs(media, tmp_path_factory):
    """The job run as the executor ran it before (rows parsed on the launcher, one
    beam.Create per split) and as it runs now (LabelFileToTFRecords), on good and broken
    clips."""
    root = tmp_path_factory.mktemp("both")
    rows = [("ok", "good", "dog", "", ""), ("window", "bunny", "cat", "1", "3"),
            ("window2", "bunny", "cat", "2", "4"), ("truncated", "truncated", "dog", "", ""),
            ("text", "text", "dog", "", ""), ("unknown", "good_copy", "unicorn", "", ""),
            ("again", "good", "dog", "", "")]
    (root / "labels.csv").write_text("clip_id,path,labels,start,end\n" + "".join(
        f"{cid},{media[key]},{label},{start},{end}\n" for cid, key, label, start, end in rows))
    write_class_map({"cat": 0, "dog": 1}, str(root / "class_map.csv"))
    source = LabelSource(str(root / "labels.csv"), str(root),
                         class_map=str(root / "class_map.csv"))
    options = dict(short_side=32, min_duration=1.0)
    records, class_map = parse_label_file(source.path, source.videos,
                                          class_map_path=source.class_map)
    records = [assign_split(r, BUCKETS) for r in records]
    with beam.Pipeline() as pipeline:
        for split in BUCKETS:
            _ = (pipeline | f"Create[{split}]" >> beam.Create(
                [r for r in records if r.split == split])
                 | f"Split[{split}]" >> SplitToTFRecords(
                     class_map, split, str(root / "before" / split / "data"),
                     str(root / "before" / "dead"), **options))
    with beam.Pipeline() as pipeline:
        _ = pipeline | LabelFileToTFRecords(
            source, class_map, BUCKETS, lambda split: str(root / "now" / split / "data"),
            str(root / "now" / "dead"), **options)
    return root


@pytest.mark.parametrize("split", list(BUCKETS))
def test_the_job_writes_what_it_wrote_when_the_launcher_parsed_the_rows(both_jobs, split):
    def outputs(run):
        folder = both_jobs / run
        examples = sorted(  # deterministic: protobuf writes a map's entries in any order
            tf.train.SequenceExample.FromString(r.numpy()).SerializeToString(deterministic=True)
            for r in tf.data.TFRecordDataset(glob.glob(str(folder / split / "data-*"))))
        letters = sorted(line for path in glob.glob(str(folder / "dead" / f"dead_letters-{split}*"))
                         for line in open(path).read().splitlines())
        counts = json.load(open(folder / "dead" / f"counts-{split}.json"))
        return examples, letters, counts

    assert outputs("now") == outputs("before")
    total = read_outcome(str(both_jobs / "now" / "dead"))
    assert (total["rows"], total["written"], total["rejected"]) == (7, 3, 4)
    assert total["read"] == total["written"] + total["rejected"]
