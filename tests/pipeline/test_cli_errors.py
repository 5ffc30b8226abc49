"""A user's mistake ends every `mbt` sub-command with one line `mbt <command>: error: ...` on
stderr naming the offending path or value, no traceback, and exit status 2; a bug still
shows its traceback, one line saying it is one, and exit status 1.

The cases (CASES below; `{name}` are the files of the `inputs` fixture: `missing` does not
exist, `text` is a text file, `folder` an empty folder, `clip` a real H.264/AAC video,
`vit` a ViT .npz of mbt-micro's depth, `scenic` a one-layer Scenic MBT checkpoint,
`records` a TFRecord file of SequenceExamples, `other_records` one of other records,
`busy` a port another socket listens on):

| command | bad input | the line names |
|---|---|---|
| summary | unknown preset; --set fusion_layer out of range; a word for a number; no '=' | the preset; the field=value |
| flops | unknown preset; --plot in a missing folder; --plot a .txt; --logdir a file | the preset; the path |
| make-demo-data | out is a file; out inside a file (the OS's error); --clips 0; --seed -1 | the path; the value |
| preprocess | missing label file; a video as label file; --videos a file; --fps 0; --splits without buckets; --out in use | the path; the value |
| train | no file matches --data; a text file as --data; TFRecords of something else; --batch-size 0; a text file as --init-checkpoint; unknown preset; a file as --model-dir; records with no counts file and no --steps-per-epoch | the glob; the path; the value; the flag |
| serve | missing --model-base; a file as --model-base; --port 70000; a port in use; --poll-seconds 0 | the path; the port; the value |
| predict | missing video; a text file as video; a server nobody listens on; a text file or an empty folder as --saved-model; --batch-size 0; --out not .csv/.json | the path; the server; the value |
| infer | missing --videos; a folder as --listing; a text file as --model; --batch-size 0; --hop without --timeline | the path; the value |
| report | missing RUN_DIR; a file as RUN_DIR; a folder that holds no run | the path |
| init-from-vit | missing .npz; a text file as .npz; a ViT of another depth; --num-classes 0; --out not .keras | the path; the value |
| import-scenic | missing checkpoint; a text file as checkpoint; the preset's fusion layer deeper than the checkpoint (the issue's case); --fusion-layer -1; --fusion-layer past the last layer; missing --class-labels | the path; the value |
| pipeline run | missing --labels; a video as --labels; a file as --videos; --epochs -1; unknown preset; --min-metric 2 | the path; the value |
| pipeline compile | --max-damaged-fraction 2; --out in a missing folder; unknown preset; --trainer-accelerator-count -1; a local --pretrained | the value; the path |
| pipeline submit | missing spec; a text file as spec; JSON that is no compiled spec; --bucket not gs:// | the path; the value |
| demo | --out a file; --clips below one eval clip per class; --port 70000; a port in use; unknown preset; --epochs 0 | the path; the value |

All run in this process through `pipeline.cli.main` (each import paid once); the mistakes
are found before any expensive work: no TFX run, Beam job, model or server starts, and
nothing is written (a pipeline run's root and metadata would be under `out`). The refusals
of `kubeflow.compile.cloud_settings` (--bucket, --image) go through the same entry point:
tests/pipeline/test_cloud_settings.py and tests/kubeflow/test_compile.py. The issue's own
case also runs through the real `mbt` console script.
"""
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from pipeline.cli import main
from tests.mbt_keras.test_checkpoints import (random_arrays, scenic_shapes, vit_shapes,
                                              write_scenic)
from tests.serving.conftest import CLIP, REPO

MISSING = "{missing}"
# (command line, what the error line must name). `{x}` are inputs' paths.
CASES = [
    ("summary --preset nope", "'nope'"),
    ("summary --preset mbt-micro --set fusion_layer=99", "fusion_layer=99"),
    ("summary --preset mbt-micro --set num_layers=six", "num_layers='six'"),
    ("summary --set garbage", "'garbage'"),
    ("flops --preset nope", "'nope'"),
    ("flops --preset mbt-micro --plot {missing}/gflops.png", "{missing}/gflops.png"),
    ("flops --preset mbt-micro --plot {text}", "{text}"),
    ("flops --preset mbt-micro --logdir {text}", "{text}"),
    ("make-demo-data {text}", "{text}"),
    ("make-demo-data {text}/clips", "{text}/clips"),  # the OS's own NotADirectoryError
    ("make-demo-data {out} --clips 0", "--clips 0"),
    ("make-demo-data {out} --seed -1", "--seed -1"),
    ("preprocess --labels {missing} --videos {folder} --out {out}", "{missing}"),
    ("preprocess --labels {clip} --videos {folder} --out {out}", "{clip}"),
    ("preprocess --labels {labels} --videos {text} --out {out}", "{text}"),
    ("preprocess --labels {labels} --videos {folder} --out {out} --fps 0", "--fps 0"),
    ("preprocess --labels {labels} --videos {folder} --out {out} --splits train", "'train'"),
    ("preprocess --labels {labels} --videos {folder} --out {used}", "{used}"),
    ("train --data {missing}/*.tfrecord --model-dir {out}", "{missing}/*.tfrecord"),
    ("train --data {text} --model-dir {out}", "{text}"),
    ("train --data {other_records} --model-dir {out}", "{other_records}"),
    ("train --data {records} --model-dir {out} --batch-size 0", "batch_size=0"),
    ("train --data {records} --model-dir {out} --preset mbt-micro --init-checkpoint {text}",
     "{text}"),
    ("train --data {records} --model-dir {out} --preset nope", "'nope'"),
    ("train --data {records} --model-dir {text}", "{text}"),
    ("train --data {records} --model-dir {out}", "--steps-per-epoch"),
    ("serve --model-base {missing} --port 0", "{missing}"),
    ("serve --model-base {text} --port 0", "{text}"),
    ("serve --model-base {folder} --port 70000", "--port 70000"),
    ("serve --model-base {folder} --port {busy} --builtin", "--port {busy}"),
    ("serve --model-base {folder} --port 0 --poll-seconds 0", "--poll-seconds 0"),
    ("predict {missing} --server 127.0.0.1:9", "{missing}"),
    ("predict {text} --server 127.0.0.1:9", "{text}"),
    ("predict {clip} --server 127.0.0.1:9", "127.0.0.1:9"),
    ("predict {clip} --saved-model {text}", "{text}"),
    ("predict {clip} --saved-model {folder}", "{folder}/saved_model.pb"),
    ("predict {clip} --server 127.0.0.1:9 --batch-size 0", "--batch-size 0"),
    ("predict {clip} --server 127.0.0.1:9 --timeline --out {out}.txt", "{out}.txt"),
    ("infer --videos {missing} --model {folder} --out {out}", "{missing}"),
    ("infer --listing {folder} --model {folder} --out {out}", "{folder}"),
    ("infer --videos {folder} --model {text} --out {out}", "{text}"),
    ("infer --videos {folder} --model {folder} --out {out} --batch-size 0", "--batch-size 0"),
    ("infer --videos {folder} --model {folder} --out {out} --hop 2", "--hop 2"),
    ("report {missing}", "{missing}"),
    ("report {text}", "{text}"),
    ("report {folder}", "{folder}"),
    ("init-from-vit {missing} --preset mbt-micro --out {out}.keras", "{missing}"),
    ("init-from-vit {text} --preset mbt-micro --out {out}.keras", "{text}"),
    ("init-from-vit {vit} --preset mbt-tiny --out {out}.keras", "num_layers=4"),
    ("init-from-vit {vit} --preset mbt-micro --num-classes 0 --out {out}.keras",
     "num_classes"),
    ("init-from-vit {vit} --preset mbt-micro --out {out}.h5", "{out}.h5"),
    ("import-scenic {missing} --out {out}.keras", "{missing}"),
    ("import-scenic {text} --out {out}.keras", "{text}"),
    ("import-scenic {scenic} --out {out}.keras", "--fusion-layer (0..1)"),
    ("import-scenic {scenic} --out {out}.keras --fusion-layer -1", "--fusion-layer -1"),
    ("import-scenic {scenic} --out {out}.keras --fusion-layer 5", "fusion_layer=5"),
    ("import-scenic {scenic} --out {out}.keras --fusion-layer 1 --class-labels {missing}",
     "{missing}"),
    ("pipeline run --videos {folder} --labels {missing} --class-map {classes}", "{missing}"),
    ("pipeline run --videos {folder} --labels {clip} --class-map {classes}", "{clip}"),
    ("pipeline run --videos {text} --labels {labels} --class-map {classes}", "{text}"),
    ("pipeline run --videos {folder} --labels {labels} --class-map {classes} --epochs -1",
     "epochs=-1"),
    ("pipeline run --videos {folder} --labels {labels} --class-map {classes} --preset nope",
     "'nope'"),
    ("pipeline run --data {folder} --labels {labels} --class-map {classes} --min-metric 2",
     "--min-metric 2"),
    ("pipeline compile --out {out}.json --bucket gs://b --max-damaged-fraction 2",
     "--max-damaged-fraction 2"),
    ("pipeline compile --out {missing}/spec.json --bucket gs://b", "{missing}/spec.json"),
    ("pipeline compile --out {out}.json --bucket gs://b --preset nope", "'nope'"),
    ("pipeline compile --out {out}.json --bucket gs://b --trainer-accelerator-count -1",
     "--trainer-accelerator-count -1"),
    ("pipeline compile --out {out}.json --bucket gs://b --videos gs://b/clips --labels "
     "gs://b/labels.csv --class-map gs://b/class_map.csv --pretrained {vit}",
     "--pretrained {vit}: a local path"),
    ("pipeline submit {missing} --project p --region r --bucket gs://b", "{missing}"),
    ("pipeline submit {text} --project p --region r --bucket gs://b", "{text}"),
    ("pipeline submit {labels_json} --project p --region r --bucket gs://b", "{labels_json}"),
    ("pipeline submit {text} --project p --region r --bucket {folder}", "{folder}"),
    ("demo --out {text}", "{text}"),
    ("demo --out {out} --clips 5", "--clips 5"),
    ("demo --out {out} --port 70000", "--port 70000"),
    ("demo --out {out} --port {busy}", "--port {busy}"),
    ("demo --out {out} --preset nope", "'nope'"),
    ("demo --out {out} --epochs 0", "--epochs 0"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """{name: path} of the bad and good inputs the cases name; `busy` is a port held by a
    listening socket for the module's tests."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "notes.txt").write_text("not a video, checkpoint, model or record file\n")
    (root / "empty").mkdir()
    (root / "used").mkdir()
    (root / "used" / "old_run.txt").write_text("another run's output\n")
    (root / "labels.csv").write_text("path,labels\nclip.mp4,dog\n")
    (root / "classes.csv").write_text("index,name\n0,dog\n")
    (root / "labels.json").write_text(json.dumps({"displayName": "not a compiled spec"}))
    np.savez(root / "vit.npz", **random_arrays(vit_shapes(hidden=32, heads=2, mlp=64, layers=2,
                                                          classes=11)))
    write_scenic(root / "ckpt", random_arrays(scenic_shapes(hidden=32, heads=2, mlp=64,
                                                            layers=1, classes=3)))
    import tensorflow as tf
    with tf.io.TFRecordWriter(str(root / "data.tfrecord")) as writer:
        writer.write(tf.train.SequenceExample().SerializeToString())
    with tf.io.TFRecordWriter(str(root / "other.tfrecord")) as writer:
        writer.write(b"a record of something else")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    yield {"missing": str(root / "nope"), "text": str(root / "notes.txt"),
           "folder": str(root / "empty"), "used": str(root / "used"), "clip": CLIP,
           "labels": str(root / "labels.csv"), "classes": str(root / "classes.csv"),
           "labels_json": str(root / "labels.json"), "vit": str(root / "vit.npz"),
           "scenic": str(root / "ckpt"), "records": str(root / "data.tfrecord"),
           "other_records": str(root / "other.tfrecord"),
           "out": str(root / "out"), "busy": str(listener.getsockname()[1])}
    listener.close()


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    """The cases are about what a user sees without --debug."""
    monkeypatch.delenv("MBT_DEBUG", raising=False)


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command, named", CASES, ids=[c for c, _ in CASES])
def test_a_users_mistake_is_one_line_naming_it_and_exit_status_2(command, named, inputs,
                                                                    capsys):
    argv = [word.format(**inputs) for word in command.split()]
    if argv[:2] == ["pipeline", "run"]:
        argv += [f"--{flag}={inputs['out']}/{flag}" for flag in ("pipeline-root",
                                                                   "metadata-path",
                                                                   "serving-base")]
    code, out, err = _run(capsys, argv)
    prog = "mbt " + " ".join(argv[:2] if argv[0] == "pipeline" else argv[:1])
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert named.format(**inputs) in lines[0]
    assert not os.path.exists(inputs["out"]) and not os.path.exists(inputs["missing"])


def test_a_bug_shows_its_traceback_and_says_it_is_one(monkeypatch, capsys):
    from mbt_keras import reports

    def broken(args):
        return {}["a key the code forgot"]
    monkeypatch.setattr(reports, "run_summary", broken)
    code, _, err = _run(capsys, ["summary", "--preset", "mbt-micro"])
    assert code == 1
    assert err.startswith("Traceback (most recent call last):")
    assert "KeyError: 'a key the code forgot'" in err
    assert err.strip().splitlines()[-1].startswith("mbt summary: internal error: KeyError ")
    assert "please report it" in err


def test_debug_shows_the_traceback_of_a_users_mistake_too(monkeypatch, capsys):
    line = ("mbt summary: error: unknown preset 'nope'; known presets: ['mbt-b16', "
            "'mbt-b16x2-scenic', 'mbt-micro', 'mbt-small', 'mbt-tiny']")
    code, _, err = _run(capsys, ["summary", "--debug", "--preset", "nope"])
    assert code == 2 and err.startswith("Traceback") and "UserError" in err
    assert err.strip().splitlines()[-1] == line
    monkeypatch.setenv("MBT_DEBUG", "1")
    code, _, err = _run(capsys, ["summary", "--preset", "nope"])
    assert code == 2 and err.startswith("Traceback")
    monkeypatch.delenv("MBT_DEBUG")
    assert _run(capsys, ["summary", "--preset", "nope"])[2] == line + "\n"


def test_argparse_mistakes_keep_their_usage_line_and_exit_status_2(capsys):
    code, _, err = _run(capsys, ["predict", "--server", "127.0.0.1:9", "--num-frames", "four"])
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("mbt predict: error: argument --num-frames: "
                                            "invalid int value: 'four'")


def test_the_mbt_console_script_ends_the_issues_case_in_one_line(inputs):
    """The issue's report, through the installed `mbt` entry point: an import whose preset
    fusion layer is deeper than the checkpoint."""
    mbt = shutil.which("mbt", path=os.path.dirname(sys.executable)) or shutil.which("mbt")
    # As a user runs it: without the test session's TensorFlow log level.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([mbt, "import-scenic", inputs["scenic"], "--out",
                           inputs["out"] + ".keras"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert done.stderr == (
        f"mbt import-scenic: error: {inputs['scenic']}: checkpoint has 1 layers and its fusion "
        "layer is not in the weights: the preset's fusion_layer=8 does not fit; pass "
        "--fusion-layer (0..1)\n")
    done = subprocess.run([mbt, "report", inputs["missing"], "--debug"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "Traceback" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"mbt report: error: RUN_DIR {inputs['missing']}: no such folder")
