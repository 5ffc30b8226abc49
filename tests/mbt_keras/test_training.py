"""The training loop: losses, schedule, clipping, checkpoints, TensorBoard and resume after SIGKILL."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from mbt_keras import augment, input_pipeline, schedule, strategy as strategies, training
from mbt_keras.config import from_preset
from mbt_keras.model import build_model, modality_logits_model
from mbt_keras.momentum import Momentum
from mbt_keras.user_error import UserError
from tests.mbt_keras.tfrecord_fixtures import write_clips

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MICRO = from_preset("mbt-micro")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_records")
    return write_clips(root / "train.tfrecord.gz", 8, 6, seconds=2, fps=10.0)


def test_multilabel_loss_sums_bce_over_classes():
    loss = training.per_example_loss(tf.constant([[1.0, 0.0]]), tf.constant([[0.0, 0.0]]),
                                     MICRO.replace(num_classes=2))
    np.testing.assert_allclose(loss, [2 * np.log(2)], rtol=1e-6)


def test_softmax_loss_with_label_smoothing_and_two_heads():
    single = MICRO.replace(head="singlelabel", num_classes=2)
    logits = tf.constant([[2.0, 0.0]])
    log_p = np.log(np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum())
    # Smoothing 0.2 over 2 classes: targets [0.9, 0.1].
    loss = training.per_example_loss(tf.constant([[1.0, 0.0]]), logits, single, 0.2)
    np.testing.assert_allclose(loss, [-(0.9 * log_p[0] + 0.1 * log_p[1])], rtol=1e-6)
    verb_noun = MICRO.replace(head="verb_noun", num_classes=(2, 3))
    loss = training.per_example_loss(tf.constant([[0.0, 1.0, 0.0, 0.0, 1.0]]),
                                     tf.zeros([1, 5]), verb_noun)
    # Scenic's MBTMultiHeadClassificationModel: the mean of the heads' losses, not their sum.
    np.testing.assert_allclose(loss, [(np.log(2) + np.log(3)) / 2], rtol=1e-6)


def test_token_classifier_trains_on_the_mean_of_per_modality_losses():
    """Scenic's train=True forward: one logit vector per modality and the mean of their
    losses, each with its modality's labels after modality mixup; not the loss of the
    averaged logits that evaluation and serving use."""
    config = MICRO.replace(num_classes=2)
    labels = tf.constant([[1.0, 0.0]])
    logits = {"rgb": tf.constant([[3.0, 0.0]]), "spec": tf.constant([[-3.0, 0.0]])}

    def bce(z, y):
        return sum(np.log1p(np.exp(-v)) if t else np.log1p(np.exp(v)) for v, t in zip(z, y))
    loss = training.training_loss(labels, logits, config)
    np.testing.assert_allclose(loss, [(bce([3, 0], [1, 0]) + bce([-3, 0], [1, 0])) / 2], rtol=1e-6)
    averaged = training.per_example_loss(labels, (logits["rgb"] + logits["spec"]) / 2, config)
    assert float(loss[0]) > float(averaged[0]) + 0.5
    own = {"rgb": labels, "spec": tf.constant([[0.0, 1.0]])}
    np.testing.assert_allclose(training.training_loss(own, logits, config),
                               [(bce([3, 0], [1, 0]) + bce([-3, 0], [0, 1])) / 2], rtol=1e-6)
    model = build_model(config)
    per_modality = modality_logits_model(model)
    x = {"rgb": tf.random.uniform([2, 2, 32, 32, 3]), "spec": tf.random.uniform([2, 96, 128])}
    outputs = per_modality(x)
    assert sorted(outputs) == ["rgb", "spec"]
    np.testing.assert_allclose(model(x), (outputs["rgb"] + outputs["spec"]) / 2, atol=1e-6)
    assert modality_logits_model(build_model(config.replace(classifier="gap"))).name == "mbt_bottleneck"


def test_modality_mixup_without_per_modality_logits_is_refused(tmp_path):
    with pytest.raises(UserError, match="modality_mixup=true .* classifier='token' and two"):
        training.Trainer(MICRO.replace(classifier="gap"),
                         training.TrainConfig(modality_mixup=True), str(tmp_path), 1)


def test_momentum_is_scenics_where_the_learning_rate_changes():
    """v <- 0.9 v + g; p <- p - lr v (flax.optim.Momentum, optax.sgd), by hand over a
    learning rate that changes every step; Keras' SGD (m <- 0.9 m - lr g) ends elsewhere."""
    rates, grads = [0.0, 0.5, 1.0, 0.25], [1.0, -2.0, 0.5, 3.0]
    p, v = 1.0, 0.0
    for lr, g in zip(rates, grads):
        v = 0.9 * v + g
        p -= lr * v

    def run(optimizer):
        variable = keras.Variable([1.0])
        optimizer.build([variable])
        for lr, g in zip(rates, grads):
            optimizer.learning_rate = lr
            optimizer.apply_gradients([(tf.constant([g]), variable)])
        return float(variable.numpy()[0])
    assert run(training.make_optimizer(training.TrainConfig(), 0.0)) == pytest.approx(p, rel=1e-6)
    assert abs(run(keras.optimizers.SGD(0.0, momentum=0.9)) - p) > 0.1


def test_schedule_warms_up_linearly_then_decays_by_cosine():
    lr = schedule.paper_schedule(0.5, global_batch=128, steps_per_epoch=10, epochs=10)
    assert (lr.peak, lr.warmup_steps, lr.total_steps) == (1.0, 25, 100)
    values = [float(lr(s)) for s in (0, 5, 25, 62, 100)]
    expected = [0.0, 0.2, 1.0, 0.5 * (1 + np.cos(np.pi * 37 / 75)), 0.0]
    np.testing.assert_allclose(values, expected, atol=1e-6)
    assert schedule.peak_learning_rate(0.5, 64) == 0.5


def test_strategy_follows_tf_config(monkeypatch):
    cluster = {"cluster": {"worker": ["a:1", "b:2"], "chief": ["c:3"]},
               "task": {"type": "chief", "index": 0}}
    assert strategies.cluster_workers(json.dumps(cluster)) == 3
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategies.cluster_workers() == 0
    default = strategies.make_strategy()
    assert default.num_replicas_in_sync == 1 and strategies.is_chief(default)
    assert strategies.set_precision(default) == "float32"


def test_an_epoch_needs_steps_per_epoch_or_the_number_of_examples():
    assert training.epoch_steps(training.TrainConfig(batch_size=4, steps_per_epoch=5), 99) == 5
    assert training.epoch_steps(training.TrainConfig(batch_size=4), 10) == 2
    assert training.epoch_steps(training.TrainConfig(batch_size=64), 10) == 1
    with pytest.raises(UserError, match="steps_per_epoch is 0 and the number of training "
                                        "examples is unknown"):
        training.epoch_steps(training.TrainConfig(batch_size=4), None)
    with pytest.raises(UserError, match="holds no examples"):
        training.epoch_steps(training.TrainConfig(batch_size=4), 0)


def test_training_writes_checkpoints_history_and_tensorboard(tmp_path, records):
    train_config = training.TrainConfig(epochs=2, batch_size=4, base_learning_rate=0.1)
    model, history = training.train(MICRO.replace(num_classes=6), train_config,
                                    str(tmp_path), records, num_examples=8, eval_data=records,
                                    verbose=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["loss"]) and 0.0 <= h["val_mAP"] <= 1.0 for h in history)
    # Checkpoints are numbered by step: 2 epochs of 8 clips // 4.
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")
    tags = set()
    for path in glob.glob(str(tmp_path / "logs" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    assert {"loss", "learning_rate", "val_mAP"} <= tags
    # A second call finds the run finished and trains nothing more. The run sets its
    # precision (float32 on CPU) process-wide, then gives the caller back its own policy.
    with strategies.kept_dtype_policy("mixed_bfloat16"):
        model, again = training.train(MICRO.replace(num_classes=6), train_config,
                                      str(tmp_path), records, num_examples=8, verbose=False)
        assert model.dtype_policy.name == "float32"
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    assert again == []


def test_single_label_evaluation_reports_top1_and_top5(tmp_path, records):
    config = MICRO.replace(head="singlelabel", num_classes=6)
    train_config = training.TrainConfig(epochs=1, batch_size=4, steps_per_epoch=1)
    _, history = training.train(config, train_config, str(tmp_path), records,
                                eval_data=records, verbose=False)
    assert {"val_top1", "val_top5"} <= set(history[0])
    assert history[0]["val_top1"] <= history[0]["val_top5"] <= 1.0


def test_an_evaluation_without_a_clip_is_one_clear_error(tmp_path, records):
    empty = write_clips(tmp_path / "empty.tfrecord", 0, 6)
    trainer = training.Trainer(MICRO.replace(num_classes=6), training.TrainConfig(batch_size=2),
                               str(tmp_path / "run"), 1)
    padded = lambda context: input_pipeline.eval_dataset(empty, trainer.config, 2,  # noqa: E731
                                                         input_context=context, padded=True)
    for data in (padded, input_pipeline.eval_dataset(empty, trainer.config, 2)):
        with pytest.raises(UserError, match="^the evaluation data holds no clip"):
            trainer.evaluate(data)


def test_gradient_clipping_bounds_the_first_update(tmp_path, records):
    def first_step_change(clip_norm):
        train_config = training.TrainConfig(epochs=1, batch_size=4, steps_per_epoch=1,
                                            warmup_epochs=0.0, clip_norm=clip_norm, seed=0)
        trainer = training.Trainer(MICRO.replace(num_classes=6), train_config,
                                   str(tmp_path / str(clip_norm)), 1)
        before = [np.array(v) for v in trainer.model.trainable_variables]
        trainer.fit(lambda ctx, skip: input_pipeline.train_dataset(
            records, trainer.config, 4, augment_inputs=False, mixup_alpha=0.0, input_context=ctx),
            verbose=False)
        after = [np.array(v) for v in trainer.model.trainable_variables]
        return np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(before, after)))

    # First SGD step: |dw| = lr * |g| with lr = 0.5 * 4 / 64; clipping caps |g| at clip_norm.
    lr = 0.5 * 4 / 64
    assert first_step_change(1e-3) == pytest.approx(lr * 1e-3, rel=1e-3)
    assert first_step_change(0.0) > 10 * lr * 1e-3


def test_the_step_applies_the_batchs_flip_jitter_and_mixup_plan(tmp_path, records):
    """mbt train hands flip, colour jitter and mixup to the step (augment_on="step"): one step
    on (inputs, labels, plan) makes the same update as one on the batch tf.data would have
    augmented with that plan."""
    config = MICRO.replace(num_classes=6, drop_path=0.0)
    x, y, plan = next(iter(input_pipeline.train_dataset(records, config, 4, seed=0,
                                                        augment_on="step")))
    assert 0.0 < float(plan[augment.MIXUP][0]) < 1.0
    x_host, y_host = augment.apply_plan(x, y, plan, image_size=config.image_size)
    train_config = training.TrainConfig(epochs=1, batch_size=4, warmup_epochs=0.0)
    updated = []
    for name, batch in (("step", (x, y, plan)), ("host", (x_host, y_host))):
        keras.utils.set_random_seed(0)
        trainer = training.Trainer(config, train_config, str(tmp_path / name), 1)
        loss = float(trainer.train_steps(iter(tf.data.Dataset.from_tensors(batch)))["loss"][0])
        updated.append((loss, [np.array(v) for v in trainer.model.trainable_variables]))
    assert updated[0][0] == pytest.approx(updated[1][0], rel=1e-4)
    for step_weights, host_weights in zip(updated[0][1], updated[1][1]):
        np.testing.assert_allclose(step_weights, host_weights, atol=1e-5)


def _train_command(data, model_dir, epochs):
    return [sys.executable, "-m", "pipeline.cli", "train", "--data", data, "--preset", "mbt-micro",
            "--set", "num_classes=6", "--epochs", str(epochs), "--batch-size", "4",
            "--steps-per-epoch", "2", "--model-dir", str(model_dir), "--quiet"]


def test_rerun_resumes_from_the_last_checkpoint_after_sigkill(tmp_path, records):
    """`mbt train --save-interval-steps 1`: killed at any point, the rerun goes on from the
    step it had reached, mid-epoch too."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    epochs = 40
    command = _train_command(records, tmp_path, epochs) + ["--save-interval-steps", "1"]
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    index = tmp_path / "checkpoints" / "checkpoint"
    deadline = time.time() + 120
    while not index.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, "training ended before it could be killed"
    # Checkpoints are numbered by step, here one each step; epochs have 2 steps.
    saved = int(tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).rsplit("-", 1)[1])
    assert 1 <= saved < 2 * epochs

    rerun = subprocess.run([c for c in command if c != "--quiet"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming at step {saved} (epoch {saved // 2 + 1}, step {saved % 2} of 2)" \
        in rerun.stdout
    epochs_run = [line for line in rerun.stdout.splitlines() if line.startswith("epoch ")]
    assert epochs_run[0] == f"epoch {saved // 2 + 1}/{epochs}"
    assert len(epochs_run) == epochs - saved // 2
    summary = json.loads((tmp_path / "config.json").read_text())
    assert summary["history"][-1]["epoch"] == epochs


def _six_batches(input_context):
    """Six different batches of 2 clips per epoch, in order: a resumed epoch that took the
    wrong ones would end elsewhere."""
    rng = np.random.default_rng(0)
    features = {"rgb": rng.random((12, 2, 32, 32, 3), dtype=np.float32),
                "spec": rng.normal(-4.0, 3.0, (12, 96, 128)).astype(np.float32)}
    labels = (rng.random((12, 4)) < 0.4).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(2).repeat()


def test_a_run_stopped_mid_epoch_resumes_there_and_ends_as_a_run_never_stopped(tmp_path):
    """Calls of 3 steps, a checkpoint every 4 steps and each epoch of 6: the calls are cut to
    3+1+2 | 2+3+1 so that each checkpoint falls between calls. Epoch 2's data runs out at
    its 5th step (step 11), after steps 9 and 10 ran: the rerun restarts from step 8 (lost 2
    <= 4 steps), skips the 2 batches epoch 2 had trained, and ends with the weights of a run
    never stopped."""
    train_config = training.TrainConfig(
        epochs=2, batch_size=2, steps_per_epoch=6, steps_per_execution=3,
        save_interval_steps=4, warmup_epochs=0.0, augment=False, mixup_alpha=0.0, seed=0)
    whole, _ = training.train(MICRO, train_config, str(tmp_path / "whole"), _six_batches,
                              verbose=False)
    epochs = []

    def stopping_in_epoch_2(input_context):
        epochs.append(len(epochs) + 1)
        return _six_batches(input_context).take(4 if len(epochs) == 2 else 6)
    stopped = tmp_path / "stopped"
    with pytest.raises(tf.errors.OutOfRangeError):
        training.train(MICRO, train_config, str(stopped), stopping_in_epoch_2, verbose=False)
    numbers = sorted(int(p.name[len("ckpt-"):-len(".index")])
                     for p in (stopped / "checkpoints").glob("ckpt-*.index"))
    assert numbers == [4, 6, 8]
    resumed, history = training.train(MICRO, train_config, str(stopped), _six_batches,
                                      verbose=False)
    assert [h["epoch"] for h in history] == [2]
    for a, b in zip(whole.weights, resumed.weights):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-7)


def test_a_seeded_epoch_resumed_after_k_batches_reads_the_clips_that_followed(records):
    """The TFRecord stream of a resumed epoch leaves out its trained batches' clips before
    decoding them, and goes on in the order of the epoch's full stream."""
    config = MICRO.replace(num_classes=6)

    def labels(skip):
        tf.random.set_seed(3)
        dataset = input_pipeline.train_dataset(records, config, 2, augment_inputs=False,
                                               mixup_alpha=0.0, shuffle_buffer=8, seed=3,
                                               skip_batches=skip)
        return [y.numpy().argmax(-1).tolist() for _, y in dataset.take(6 - skip)]
    full = labels(0)
    assert labels(3) == full[3:]
    assert full[:3] != full[3:]


def test_a_checkpoint_of_another_optimizer_is_not_resumed(tmp_path, records):
    """A run resumes only with the optimizer state it wrote: one saved by AdamW, or by Keras'
    SGD before the Trainer took Scenic's momentum (same variables, other meaning), is refused
    by name instead of loading as this optimizer's state."""
    config = MICRO.replace(num_classes=6)

    def trainer(**settings):
        train_config = training.TrainConfig(epochs=1, batch_size=4, steps_per_epoch=1, **settings)
        return training.Trainer(config, train_config, str(tmp_path), 1)
    adamw = trainer(optimizer="adamw")
    adamw.manager.save(checkpoint_number=1)
    with pytest.raises(UserError, match="no optimizer state of optimizer='sgd'"):
        trainer().restore()
    assert trainer(optimizer="adamw").restore() == 0
    old_sgd = tf.train.Checkpoint(model=adamw.model, epoch=adamw.epoch,
                                  optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    old_sgd.save(str(tmp_path / "checkpoints" / "ckpt"))
    with pytest.raises(UserError, match="Keras' SGD before the Trainer took Scenic's momentum"):
        trainer().restore()


def test_a_checkpoint_from_before_step_checkpoints_resumes_at_its_epochs_end(tmp_path):
    """Checkpoints written at epoch ends only (model, epoch, optimizer; no step in the
    epoch) still resume, at the start of the next epoch."""
    train_config = training.TrainConfig(epochs=3, batch_size=4, steps_per_epoch=5)
    old = training.Trainer(MICRO, train_config, str(tmp_path), 5)
    old.epoch.assign(2)
    tf.train.Checkpoint(model=old.model, epoch=old.epoch, momentum=old.optimizer).save(
        str(tmp_path / "checkpoints" / "ckpt"))
    assert training.Trainer(MICRO, train_config, str(tmp_path), 5).restore() == 10


def test_optimizer_choice_is_validated_and_built():
    sgd = training.make_optimizer(training.TrainConfig(momentum=0.8), 0.1)
    assert isinstance(sgd, Momentum) and sgd.momentum == 0.8
    assert Momentum.from_config(sgd.get_config()).momentum == 0.8
    adamw = training.make_optimizer(training.TrainConfig(optimizer="adamw", weight_decay=0.01), 1e-3)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == 0.01
    with pytest.raises(ValueError, match="TrainConfig.optimizer='adam'"):
        training.make_optimizer(training.TrainConfig(optimizer="adam"), 0.1)
