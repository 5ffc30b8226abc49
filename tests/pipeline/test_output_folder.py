"""replaced_output: a job's output folder is replaced whole or not at all, locally and on a
tf.io.gfile filesystem that is not local (TensorFlow's ram://, an object store like gs://)."""
import os

import pytest
import tensorflow as tf

from pipeline.output_folder import OutputExistsError, replaced_output


def test_a_failed_job_leaves_the_old_output_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old run")
    with pytest.raises(RuntimeError, match="job failed"):
        with replaced_output(str(out), overwrite=True) as staging:
            (tmp_path / os.path.basename(staging) / "new.txt").write_text("half a run")
            raise RuntimeError("job failed")
    assert os.listdir(tmp_path) == ["out"] and os.listdir(out) == ["old.txt"]
    with replaced_output(str(out), overwrite=True) as staging:
        assert os.path.dirname(staging) == str(tmp_path)
        (tmp_path / os.path.basename(staging) / "new.txt").write_text("a whole run")
    assert os.listdir(tmp_path) == ["out"] and os.listdir(out) == ["new.txt"]


def test_a_non_local_output_is_refused_then_replaced_whole(tmp_path):
    out = f"ram://{tmp_path.name}/out"
    for name in ("data-00000-of-00002.gz", "DeadLetters/dead_letters-train-00000-of-00001.jsonl"):
        tf.io.gfile.makedirs(os.path.dirname(f"{out}/{name}"))
        with tf.io.gfile.GFile(f"{out}/{name}", "w") as f:
            f.write("old run")
    with pytest.raises(OutputExistsError, match="is not empty .* pass --overwrite"):
        with replaced_output(out, overwrite=False):
            pass
    with replaced_output(out, overwrite=True) as staging:
        assert not staging.startswith(out)
        tf.io.gfile.makedirs(f"{staging}/Split-train")
        with tf.io.gfile.GFile(f"{staging}/Split-train/data-00000-of-00001.gz", "w") as f:
            f.write("new run")
    files = sorted(f"{folder}/{name}" for folder, _, names in tf.io.gfile.walk(out)
                   for name in names)
    assert files == [f"{out}/Split-train/data-00000-of-00001.gz"]
    assert tf.io.gfile.listdir(f"ram://{tmp_path.name}") == ["out"]
