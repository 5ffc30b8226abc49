"""The Trainer trains as the authors' code does: each step of the reference runs made with
Scenic (tests/data/scenic_train_steps, README there) is replayed with the project's importer
and the Trainer's own step, and its loss, learning rate, weights after the last step and
evaluation logits equal Scenic's (relative difference <= 1e-5; each array's difference is
taken relative to its largest magnitude). Every run is replayed twice: as `mbt train` steps
by default, and with `TrainConfig.jit_compile` (XLA, as TPUStrategy compiles the step) and
`TrainConfig.steps_per_execution=3` (several steps in one call, as on a TPU)."""
import json
import os
import subprocess
import sys

import pytest

from tests.mbt_keras import scenic_steps

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def replays(tmp_path_factory):
    """Every run replayed in one process of its own: the `_2replicas` runs need two logical
    CPU devices, which TensorFlow only makes before it starts."""
    out = tmp_path_factory.mktemp("scenic_steps") / "replays.json"
    done = subprocess.run([sys.executable, "-m", "tests.mbt_keras.scenic_steps", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""))
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


def test_reference_data_holds_every_kind_of_run():
    settings = [scenic_steps.read_run(run)[0] for run in scenic_steps.RUNS]
    assert {s["head"] for s in settings} == {"multilabel", "singlelabel", "verb_noun"}
    assert any(s.get("devices", 1) == 2 for s in settings)
    assert any(s.get("mixmod") for s in settings)
    assert any(s["fusion_layer"] == 3 and not s["use_bottleneck"] for s in settings)


@pytest.mark.parametrize("variant", list(scenic_steps.VARIANTS))
@pytest.mark.parametrize("run", scenic_steps.RUNS)
def test_trainer_steps_equal_scenics(replays, run, variant):
    measured = replays[run][variant]
    # The reference moves the weights far from the init, so agreement is not the init's.
    assert measured["moved"] > 0.5
    for step, (ours, theirs) in enumerate(zip(measured["lr"], measured["scenic_lr"])):
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-9), f"learning rate of step {step}"
    for step, (ours, theirs) in enumerate(zip(measured["loss"], measured["scenic_loss"])):
        assert abs(ours - theirs) <= TOLERANCE * abs(theirs), \
            f"step {step}: loss {ours} where Scenic's is {theirs}"
    worst = max(measured["weights"], key=measured["weights"].get)
    assert measured["weights"][worst] <= TOLERANCE, \
        f"after the last step {worst} differs from Scenic's by {measured['weights'][worst]:.2e}"
    assert measured["eval_logits"] <= TOLERANCE
