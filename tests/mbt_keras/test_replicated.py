"""The Trainer on two replicas (MirroredStrategy over two logical CPU devices, made in a
process of its own by tests/mbt_keras/replicated_job.py): evaluation split over the replicas
gives the one-device metrics, and float16 loss scaling skips a step that overflowed on any
replica."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    work = tmp_path_factory.mktemp("replicated")
    done = subprocess.run([sys.executable, "-m", "tests.mbt_keras.replicated_job", str(work),
                           str(work / "out.json")], cwd=REPO, capture_output=True, text=True,
                          timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((work / "out.json").read_text())


def test_each_replica_scores_half_the_views_and_the_metrics_are_one_devices(measured):
    records = measured["evaluation"]["records"]
    # 8 clips x 2 views read as `training.train` reads them: 8 views on each replica, in
    # batches of one shape (2 clips x 2 views), the last all padding.
    assert records["views"] == {"0": 8, "1": 8}
    assert records["shapes"] == [[2, 2]]
    assert records["two"]["mAP"] == pytest.approx(records["one"]["mAP"], rel=1e-6)
    assert 0.0 < records["one"]["mAP"] < 1.0


def test_shards_of_different_lengths_keep_one_batch_shape_and_count_every_clip(measured):
    """7 clips: replica 1's shard is a clip short, its last batch half padding. The padded
    batches give the metrics of plain batches on one device, every clip counted once."""
    seven = measured["evaluation"]["seven"]
    assert seven["views"] == {"0": 8, "1": 6}
    assert seven["shapes"] == [[2, 2]]
    assert seven["two"]["mAP"] == pytest.approx(seven["unpadded"]["mAP"], rel=1e-6)
    assert seven["one"]["mAP"] == pytest.approx(seven["unpadded"]["mAP"], rel=1e-6)


def test_a_replica_left_without_clips_by_the_last_batch_still_evaluates(measured):
    """5 clips in global batches of 4 (a dataset the caller batched, not padded): the last
    batch gives replica 0 one clip, replica 1 none."""
    uneven = measured["evaluation"]["uneven"]
    assert uneven["views"] == {"0": 6, "1": 4}
    assert uneven["two"]["mAP"] == pytest.approx(uneven["one"]["mAP"], rel=1e-6)


def test_float16_skips_a_step_whose_gradient_overflowed_on_replica_1_only(measured):
    """Keras' LossScaleOptimizer checks replica 0's un-reduced gradient (before this Trainer
    shared the check, the inf was summed into the weights: every weight inf, then NaN);
    now every replica skips the step and halves its scale, and the next step trains."""
    for replica in measured["loss_scaling"]["replicas"]:
        assert replica["overflow_step_finite"] and replica["overflow_step_moved"] == 0.0
        assert replica["scale_after_overflow"] == replica["scale_before_overflow"] / 2
        assert replica["clean_step_finite"] and replica["clean_step_moved"] > 1e-3
        assert replica["differs_from_replica_0"] == 0.0
