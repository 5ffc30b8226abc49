"""The training loop of the paper's recipe (section 4.2), one code path for every strategy.

The step is the authors' (Scenic's projects/mbt/trainer.py `train_step`, checked step by
step against runs of their code: tests/mbt_keras/test_scenic_steps.py, docs/results.md):
with classifier='token' each modality's logits get their own loss and the loss is the mean
of those; each replica clips the gradient of its own mean loss before the replicas average
them; SGD momentum is Scenic's (mbt_keras/momentum.py).

A custom `strategy.run` step rather than `model.fit`: with Keras 3 on TF 2.16,
`fit` fails under MultiWorkerMirroredStrategy while this loop works (STACK.md). As Keras'
`steps_per_execution`, one call runs several steps in a loop on the device, so an
accelerator does not idle while the host dispatches each step. Evaluation runs on every
replica too. Checkpoints (model, optimizer, epoch, step in the epoch) are written every
epoch and every `save_interval_steps` steps or `save_interval_minutes` minutes; a rerun
resumes from the last, mid-epoch included.
"""
import dataclasses
import os
import time
from typing import Callable, Optional, Union

import keras
import numpy as np
import tensorflow as tf

from mbt_keras import augment, input_pipeline, metrics, schedule, strategy as strategies
from mbt_keras.config import ModelConfig, checked_fields
from mbt_keras.model import build_model, modality_logits_model
from mbt_keras.momentum import Momentum
from mbt_keras.user_error import UserError

CHECKPOINT_SUBDIR = "checkpoints"
LOG_SUBDIR = "logs"
# Each optimizer's state is saved under the name of its update rule. Keras' SGD, which the
# Trainer used before Scenic's momentum, saved m = 0.9 m - lr g under "optimizer"; restored
# into Momentum it would load silently as v = 0.9 v + g (another sign and scale).
OPTIMIZER_CHECKPOINT_KEYS = {"sgd": "momentum", "adamw": "optimizer"}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation hyperparameters. Defaults are the paper's (4.2); the authors' released
    configs add label_smoothing=0.3, clip_norm=1.0 and mixup_alpha=0.5.

    With optimizer="sgd" the step is Scenic's (the module docstring). Departures from the
    authors' recipe: optimizer="adamw" (the demo's; Scenic's MBT configs use momentum SGD),
    augment_on / sampling="async" (where and how windows are drawn, not what the step
    computes), and the learning rate scaled with the batch (schedule.py: Scenic takes
    base_learning_rate as the peak; ours is the peak at batch 64)."""
    epochs: int = 50
    batch_size: int = 64                 # global batch, split over all replicas
    base_learning_rate: float = 0.5      # at batch 64; scaled linearly (schedule.py)
    warmup_epochs: float = 2.5
    momentum: float = 0.9
    optimizer: str = "sgd"               # "adamw": AdamW with weight_decay (not the paper's)
    weight_decay: float = 0.05           # AdamW only
    label_smoothing: float = 0.0
    clip_norm: float = 0.0               # global gradient norm; 0 turns clipping off
    mixup_alpha: float = 0.3             # 0 turns mixup off
    modality_mixup: bool = False         # Scenic's mixmod: one weight and one label mix per modality
    sampling: str = "sync"               # "async": independent windows per modality
    augment: bool = True
    augment_on: str = "step"             # flip, colour jitter, mixup: "step" (accelerator) or "host"
    eval_views: int = 4
    steps_per_epoch: int = 0             # 0: number of training examples // batch_size
    shuffle_buffer: int = 64
    jit_compile: bool = False            # XLA-compile each replica's step (as TPUStrategy does)
    steps_per_execution: int = 1         # steps per call of the step function (Keras' name)
    save_interval_steps: int = 0         # checkpoint every this many steps too (0: epochs only)
    save_interval_minutes: float = 30.0  # and at least this often (0: off), for preemptible VMs
    float16: bool = False                # mixed float16 on GPU (bfloat16 is automatic on TPU)
    seed: Optional[int] = None           # initial weights, dropout and data order: a rerun repeats

    def __post_init__(self):
        for field, ok, why in (
                ("epochs", self.epochs >= 0, "must be >= 0"),
                ("batch_size", self.batch_size >= 1, "must be >= 1"),
                ("base_learning_rate", self.base_learning_rate >= 0, "must be >= 0"),
                ("warmup_epochs", self.warmup_epochs >= 0, "must be >= 0"),
                ("optimizer", self.optimizer in ("sgd", "adamw"), "expected 'sgd' or 'adamw'"),
                ("label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"),
                ("clip_norm", self.clip_norm >= 0, "must be >= 0 (0: no clipping)"),
                ("mixup_alpha", self.mixup_alpha >= 0, "must be >= 0 (0: no mixup)"),
                ("sampling", self.sampling in input_pipeline.SAMPLINGS,
                 f"expected one of {input_pipeline.SAMPLINGS}"),
                ("augment_on", self.augment_on in input_pipeline.AUGMENT_PLACES,
                 f"expected one of {input_pipeline.AUGMENT_PLACES}"),
                ("eval_views", self.eval_views >= 1, "must be >= 1"),
                ("steps_per_epoch", self.steps_per_epoch >= 0, "must be >= 0 (0: one pass)"),
                ("shuffle_buffer", self.shuffle_buffer >= 1, "must be >= 1"),
                ("steps_per_execution", self.steps_per_execution >= 1, "must be >= 1"),
                ("save_interval_steps", self.save_interval_steps >= 0,
                 "must be >= 0 (0: each epoch only)"),
                ("save_interval_minutes", self.save_interval_minutes >= 0,
                 "must be >= 0 (0: off)")):
            if not ok:
                raise UserError(f"TrainConfig.{field}={getattr(self, field)!r}: {why}")

    def replace(self, **overrides) -> "TrainConfig":
        return dataclasses.replace(self, **checked_fields(TrainConfig, overrides))

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """From flag values (`--train-set`): unknown fields and wrong types are a UserError."""
        return cls(**checked_fields(cls, values))


def make_optimizer(train_config: TrainConfig, learning_rate):
    """SGD with momentum as the authors apply it (paper 4.2, momentum.py) or AdamW; the
    schedule is the same for both."""
    if train_config.optimizer == "sgd":
        return Momentum(learning_rate=learning_rate, momentum=train_config.momentum)
    return keras.optimizers.AdamW(learning_rate=learning_rate,  # optimizer="adamw"
                                  weight_decay=train_config.weight_decay)


def per_example_loss(labels, logits, config: ModelConfig, label_smoothing: float = 0.0):
    """[B] losses of one set of logits (3.4; Scenic's model classes' `loss_function`):
    sigmoid BCE summed over classes (multi-label), softmax CE (single-label), the mean of the
    verb and noun CEs (Epic-Kitchens, MBTMultiHeadClassificationModel). Label smoothing is
    y (1 - s) + s / K with K the classes of each head."""
    logits = tf.cast(logits, tf.float32)
    heads = tf.split(labels, list(config.num_classes), axis=-1)
    head_logits = tf.split(logits, list(config.num_classes), axis=-1)
    losses = []
    for y, z in zip(heads, head_logits):
        y = y * (1.0 - label_smoothing) + label_smoothing / y.shape[-1]
        if config.head == "multilabel":
            losses.append(tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(y, z), axis=-1))
        else:
            losses.append(tf.nn.softmax_cross_entropy_with_logits(y, z))
    return tf.add_n(losses) / len(losses)


def training_loss(labels, logits, config: ModelConfig, label_smoothing: float = 0.0):
    """[B]: the mean over the training outputs of their per-example losses, as Scenic's
    `loss_function` takes the per-modality logits of classifier='token'
    (`modality_logits_model`: a dict) or one tensor. `labels` are one [B, C] tensor for every
    output, or {modality: [B, C]} after modality mixup (each modality's own mix)."""
    outputs = logits if isinstance(logits, dict) else {None: logits}
    if isinstance(labels, dict) and None in outputs:
        raise ValueError("per-modality labels (modality mixup) need per-modality logits")
    losses = [per_example_loss(labels[m] if isinstance(labels, dict) else labels, z, config,
                               label_smoothing) for m, z in outputs.items()]
    return tf.add_n(losses) / len(losses)


def check_recipe(config: ModelConfig, train_config: TrainConfig) -> None:
    """Settings that are each valid but not together, refused before anything is built."""
    if train_config.modality_mixup and train_config.mixup_alpha > 0 and not (
            config.classifier == "token" and len(config.modalities) == 2):
        raise UserError(
            "TrainConfig.modality_mixup=true mixes each modality's labels with its own weight, "
            "so each modality needs its own logits: it needs classifier='token' and two "
            f"modalities (this model: classifier={config.classifier!r}, modalities="
            f"{list(config.modalities)}); Scenic refuses mixmod there too. Set "
            "modality_mixup=false")


def scores_and_labels(config: ModelConfig, logits, labels):
    """Per-view logits [B, V, C] averaged over views into probabilities (sigmoid or softmax)."""
    logits = tf.reduce_mean(tf.cast(logits, tf.float32), axis=1)
    if config.head == "multilabel":
        return tf.sigmoid(logits), labels
    heads = tf.split(logits, list(config.num_classes), axis=-1)
    return tf.concat([tf.nn.softmax(h) for h in heads], axis=-1), labels


def evaluation_metrics(config: ModelConfig, scores: np.ndarray, labels: np.ndarray) -> dict:
    """mAP for multi-label; top-1 / top-5 per head otherwise (paper 4.1)."""
    if config.head == "multilabel":
        m_ap, _, skipped = metrics.mean_average_precision(labels, scores)
        return {"mAP": m_ap, "classes_without_positives": float(skipped)}
    out = {}
    names = ["verb_", "noun_"] if config.head == "verb_noun" else [""]
    edges = np.cumsum((0,) + tuple(config.num_classes))
    for name, lo, hi in zip(names, edges[:-1], edges[1:]):
        for k in (1, 5):
            if k <= hi - lo:
                out[f"{name}top{k}"] = metrics.top_k_accuracy(labels[:, lo:hi], scores[:, lo:hi], k)
    return out


class Trainer:
    """Owns the model, optimizer, checkpoints and logs of one run under one strategy."""

    def __init__(self, config: ModelConfig, train_config: TrainConfig, model_dir: str,
                 steps_per_epoch: int, strategy: tf.distribute.Strategy = None,
                 init_fn: Callable[[keras.Model], None] = None, log_dir: str = None):
        self.config = config
        self.train_config = train_config
        self.steps_per_epoch = steps_per_epoch
        check_recipe(config, train_config)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.chief = strategies.is_chief(self.strategy)
        policy = strategies.set_precision(self.strategy, train_config.float16)
        if train_config.seed is not None:
            keras.utils.set_random_seed(train_config.seed)
        with self.strategy.scope():
            self.model = build_model(config)
            if init_fn is not None:
                init_fn(self.model)
            self._forward = modality_logits_model(self.model)
            lr = schedule.paper_schedule(train_config.base_learning_rate, train_config.batch_size,
                                         steps_per_epoch, train_config.epochs,
                                         train_config.warmup_epochs)
            optimizer = make_optimizer(train_config, lr)
            if policy == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                             name="step_in_epoch")
        self._epoch_state = {"model": self.model, "epoch": self.epoch,
                             OPTIMIZER_CHECKPOINT_KEYS[train_config.optimizer]: self.optimizer}
        self.checkpoint = tf.train.Checkpoint(step_in_epoch=self.step_in_epoch,
                                              **self._epoch_state)
        # Every worker saves (saving may run collectives); only the chief keeps its files.
        self.checkpoint_dir = os.path.join(model_dir, CHECKPOINT_SUBDIR)
        self._scratch = None if self.chief else os.path.join(
            model_dir, f"{CHECKPOINT_SUBDIR}_{strategies.task_id(self.strategy)}")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._scratch or self.checkpoint_dir, max_to_keep=3)
        log_dir = log_dir or os.path.join(model_dir, LOG_SUBDIR)
        self.writer = (tf.summary.create_file_writer(log_dir)
                       if self.chief else tf.summary.create_noop_writer())
        # jit_compile: XLA compiles the whole replica step where this process holds the one
        # replica; with several, the update goes through the optimizer's merge_call into every
        # replica's copy of the variables, which a compiled function cannot reach, so XLA
        # compiles the loss and gradient. TPUStrategy compiles the whole step itself.
        whole = self.strategy.num_replicas_in_sync == 1
        jit = train_config.jit_compile and not isinstance(self.strategy,
                                                          tf.distribute.TPUStrategy)
        self._replica_fn = (tf.function(self._replica_step, jit_compile=True)
                            if jit and whole else self._replica_step)
        self._gradients_fn = (tf.function(self._loss_and_gradients, jit_compile=True)
                              if jit and not whole else self._loss_and_gradients)
        self._steps_fn = None
        self._eval_fn = None

    def restore(self) -> int:
        """Restore the newest checkpoint of the chief's directory; returns the steps trained."""
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest:
            key = OPTIMIZER_CHECKPOINT_KEYS[self.train_config.optimizer]
            saved = {name.split("/")[0] for name, _ in tf.train.list_variables(latest)}
            if key not in saved:
                raise UserError(
                    f"{latest} holds no optimizer state of optimizer="
                    f"{self.train_config.optimizer!r} (it has {sorted(saved)}): it was written "
                    "with another optimizer, or with Keras' SGD before the Trainer took "
                    "Scenic's momentum, whose velocity means something else; resume with the "
                    "settings that wrote it, or train into a new model directory")
            # Checkpoints from before step checkpoints were written at epoch ends only.
            checkpoint = (self.checkpoint if "step_in_epoch" in saved
                          else tf.train.Checkpoint(**self._epoch_state))
            checkpoint.restore(latest).assert_existing_objects_matched()
        return self._global_step(int(self.epoch.numpy()), int(self.step_in_epoch.numpy()))

    def _global_step(self, epoch: int, step_in_epoch: int) -> int:
        return epoch * self.steps_per_epoch + step_in_epoch

    def _loss_and_gradients(self, inputs, labels, plan=None):
        """This replica's mean loss and its gradient, clipped here as Scenic clips on each
        device before `pmean`: per-modality losses averaged (training_loss)."""
        cfg = self.train_config
        if plan is not None:
            # The batch's flip, colour jitter and mixup, drawn by tf.data, applied here.
            inputs, labels = augment.apply_plan(
                inputs, labels, plan, image_size=self.config.image_size,
                fused=not isinstance(self.strategy, tf.distribute.TPUStrategy))
        with tf.GradientTape() as tape:
            logits = self._forward(inputs, training=True)
            loss = tf.reduce_mean(training_loss(labels, logits, self.config, cfg.label_smoothing))
            if self.model.losses:
                loss += tf.add_n(self.model.losses)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.model.trainable_variables)
        if cfg.clip_norm > 0:
            scale = getattr(self.optimizer, "dynamic_scale", 1.0)
            grads, _ = tf.clip_by_global_norm(grads, cfg.clip_norm * scale)
        return loss, grads

    def _replica_step(self, inputs, labels, plan=None):
        """Scenic's train_step on this replica's batch; the optimizer applies the replicas'
        mean gradient."""
        loss, grads = self._gradients_fn(inputs, labels, plan)
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        if replicas > 1 and isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # Keras' LossScaleOptimizer checks one replica's gradients before they are summed
            # (replica 0's under merge_call, each its own without): an overflow elsewhere would
            # reach the weights, or the replicas would part ways. With the replicas' flags
            # summed, every replica sees a non-finite gradient when one has, and all skip.
            overflows = context.all_reduce(
                tf.distribute.ReduceOp.SUM,
                tf.cast(tf.logical_not(self.optimizer.check_finite(grads)), tf.float32))
            poison = tf.where(overflows > 0, float("nan"), 0.0)
            grads = [g + tf.cast(poison, g.dtype) for g in grads]
        # The optimizer sums the replicas' gradients; 1/N of each makes that their mean.
        self.optimizer.apply_gradients(zip([g / replicas for g in grads],
                                           self.model.trainable_variables))
        return loss

    def train_steps(self, iterator, steps: int = 1, save_due: bool = False) -> dict:
        """`steps` of Scenic's step in one call, a loop inside one tf.function, so the host
        is not between steps. Returns each step's loss (mean over replicas) and learning
        rate, and `save`: whether any worker's clock asked for a checkpoint (`save_due`), so
        that all workers save together."""
        if self._steps_fn is None:
            @tf.function
            def run(iterator, steps, save_due):
                losses = tf.TensorArray(tf.float32, size=steps)
                rates = tf.TensorArray(tf.float32, size=steps)
                for i in tf.range(steps):
                    rates = rates.write(i, tf.cast(self.optimizer.learning_rate, tf.float32))
                    batch = next(iterator)   # (inputs, labels) or (inputs, labels, plan)
                    per_replica = self.strategy.run(self._replica_fn, args=tuple(batch))
                    losses = losses.write(i, self.strategy.reduce(
                        tf.distribute.ReduceOp.MEAN, per_replica, axis=None))
                asked = self.strategy.run(lambda: tf.cast(save_due, tf.float32))
                return {"loss": losses.stack(), "learning_rate": rates.stack(),
                        "save": self.strategy.reduce(tf.distribute.ReduceOp.SUM, asked,
                                                     axis=None) > 0}
            self._steps_fn = run
        return self._steps_fn(iterator, tf.constant(steps), tf.constant(save_due))

    def _replica_scores(self, inputs, labels, valid=None):
        """(scores, labels, valid) of every replica's clips, gathered on each: views folded
        into the batch, their logits averaged per clip. Padded batches (`valid` given) have one
        shape on every replica and are gathered as they are. Otherwise a replica's share may
        be smaller or empty (the last batch) and gathering needs one shape, so each pads its
        share to the largest and marks its rows valid (a data-dependent pad: not for TPUs)."""
        shape = tf.shape(next(iter(inputs.values())))
        clips, views = shape[0], shape[1]
        flat = {k: tf.reshape(v, tf.concat([[clips * views], tf.shape(v)[2:]], 0))
                for k, v in inputs.items()}
        logits = self.model(flat, training=False)
        logits = tf.reshape(logits, [clips, views, sum(self.config.num_classes)])
        scores, labels = scores_and_labels(self.config, logits, labels)
        context = tf.distribute.get_replica_context()
        if valid is not None:
            # Gathered as tensors of this replica (an input tensor straight from the iterator
            # has no device for MultiWorkerMirroredStrategy's collective).
            return tuple(context.all_gather(tf.identity(t), axis=0)
                         for t in (scores, labels, valid))
        padding = tf.reduce_max(context.all_gather(clips[None], axis=0)) - clips
        return tuple(context.all_gather(tf.pad(t, [[0, padding]] + [[0, 0]] * (t.shape.rank - 1)),
                                        axis=0)
                     for t in (scores, labels, tf.ones([clips])))

    def evaluate(self, data) -> dict:
        """Metrics over evaluation clips ([B, V, ...] inputs, [B, C] labels): each replica
        scores its share and every worker gathers all scores, so no worker waits in a
        collective the others skip. `data`: a dataset of global batches, or a function
        input_context -> this replica's batches (each worker reading its shard); batches of
        eval_dataset(padded=True) are read until no replica has a clip left."""
        distributed = (self.strategy.experimental_distribute_dataset(data)
                       if isinstance(data, tf.data.Dataset)
                       else self.strategy.distribute_datasets_from_function(data))
        if self._eval_fn is None:
            # Shapes relaxed: a batch whose share is statically empty would not trace.
            @tf.function(reduce_retracing=True)
            def gathered(inputs, labels, valid=None):
                per_replica = self.strategy.run(self._replica_scores,
                                                args=(inputs, labels, valid))
                scores, labels, valid = (self.strategy.experimental_local_results(t)[0]
                                         for t in per_replica)
                return tf.boolean_mask(scores, valid > 0), tf.boolean_mask(labels, valid > 0)
            self._eval_fn = gathered
        scores, labels = [], []
        for batch in distributed:
            s, y = self._eval_fn(*batch)
            if len(batch) == 3 and not len(s):
                break  # padding on every replica: the gathered result is every worker's
            scores.append(s.numpy())
            labels.append(y.numpy())
        if not scores:
            raise UserError("the evaluation data holds no clip: an empty eval split or file "
                            "pattern (evaluate on some clips, or leave the evaluation out)")
        return evaluation_metrics(self.config, np.concatenate(scores), np.concatenate(labels))

    def _call_size(self, epoch: int, step: int) -> int:
        """Steps of the next call: steps_per_execution, cut at the epoch's end and at the
        next save_interval_steps checkpoint."""
        cfg = self.train_config
        steps = min(cfg.steps_per_execution, self.steps_per_epoch - step)
        if cfg.save_interval_steps:
            done = self._global_step(epoch, step)
            steps = min(steps, cfg.save_interval_steps - done % cfg.save_interval_steps)
        return steps

    def fit(self, train_dataset_fn, eval_data=None, verbose: bool = True) -> list:
        """Train up to train_config.epochs, resuming from the last checkpoint; per-epoch history.

        Each epoch reads a stream of its own, `train_dataset_fn(input_context, skip)`: the
        pipeline's per-replica batches after its first `skip`, those a resumed epoch had
        trained. A seeded run draws epoch e's order and augmentation from seed + e,
        so the epoch's stream is rebuilt without replaying the epochs before it.
        `eval_data`: what `evaluate` takes."""
        cfg = self.train_config
        done = self.restore()
        start, skip = int(self.epoch.numpy()), int(self.step_in_epoch.numpy())
        if verbose and self.chief and done:
            print(f"resuming at step {done} (epoch {start + 1}, step {skip} of "
                  f"{self.steps_per_epoch})", flush=True)
        history = []
        last_save = time.monotonic()
        for epoch in range(start, cfg.epochs):
            if verbose and self.chief:
                print(f"epoch {epoch + 1}/{cfg.epochs}", flush=True)
            first = skip if epoch == start else 0
            if cfg.seed is not None:
                tf.random.set_seed(cfg.seed + epoch)
            # A pipeline hands each step one batch per replica of its worker.
            iterator = iter(self.strategy.distribute_datasets_from_function(
                lambda context: train_dataset_fn(context, first * context.num_replicas_in_sync
                                                 // context.num_input_pipelines)))
            progbar = keras.utils.Progbar(self.steps_per_epoch,
                                          verbose=1 if verbose and self.chief else 0,
                                          stateful_metrics=["lr"])
            if first:
                progbar.update(first)
            losses, step = [], first
            while step < self.steps_per_epoch:
                steps = self._call_size(epoch, step)
                due = (cfg.save_interval_minutes > 0 and
                       time.monotonic() - last_save >= 60 * cfg.save_interval_minutes)
                result = self.train_steps(iterator, steps, due)
                step += steps
                self.step_in_epoch.assign(step)
                call_losses = result["loss"].numpy().tolist()
                losses.extend(call_losses)
                loss, rate = float(np.mean(call_losses)), float(result["learning_rate"][-1])
                # Keras' Progbar shows its last update as given: the epoch's mean, as fit's.
                shown = float(np.mean(losses)) if step >= self.steps_per_epoch else loss
                progbar.update(step, [("loss", shown), ("lr", rate)])
                global_step = self._global_step(epoch, step)
                with self.writer.as_default(step=global_step):
                    tf.summary.scalar("batch_loss", loss)
                    tf.summary.scalar("batch_learning_rate", rate)
                on_interval = (cfg.save_interval_steps and
                               global_step % cfg.save_interval_steps == 0)
                if step < self.steps_per_epoch and (on_interval or bool(result["save"])):
                    self.manager.save(checkpoint_number=global_step)
                    last_save = time.monotonic()
            self.epoch.assign(epoch + 1)
            self.step_in_epoch.assign(0)
            self.manager.save(checkpoint_number=self._global_step(epoch + 1, 0))
            last_save = time.monotonic()
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else np.nan,
                      "learning_rate": float(self.optimizer.learning_rate)}
            if eval_data is not None:
                record.update({f"val_{k}": v for k, v in self.evaluate(eval_data).items()})
            with self.writer.as_default(step=epoch + 1):
                for key, value in record.items():
                    if key != "epoch":
                        tf.summary.scalar(key, value)
            self.writer.flush()
            if verbose and self.chief:
                print(" ".join(f"{k}={v:.4g}" for k, v in record.items()), flush=True)
            history.append(record)
        if self._scratch and tf.io.gfile.exists(self._scratch):  # gs:// under a cloud run
            tf.io.gfile.rmtree(self._scratch)
        return history


def epoch_steps(train_config: TrainConfig, num_examples: Optional[int]) -> int:
    """steps_per_epoch, else one pass over `num_examples` (what the job that wrote the records
    counted): never a pass over the records to count them, which for AudioSet would read
    terabytes on every worker before step 1."""
    if train_config.steps_per_epoch:
        return train_config.steps_per_epoch
    if num_examples is None:
        raise UserError(
            "steps_per_epoch is 0 and the number of training examples is unknown: train on the "
            "records of mbt preprocess or the pipeline's ExampleGen (Split-<name>/ with their "
            "DeadLetters/counts-<name>.json, every file of the split), or give steps_per_epoch "
            "(mbt train --steps-per-epoch N)")
    if num_examples < 1:
        raise UserError("the training data holds no examples (its counts file says 0 were "
                        "written; see its DeadLetters/ for why)")
    return max(num_examples // train_config.batch_size, 1)


def train(config: ModelConfig, train_config: TrainConfig, model_dir: str,
          train_data: Union[str, list, Callable], *, num_examples: Optional[int] = None,
          eval_data=None, strategy: tf.distribute.Strategy = None,
          init_fn: Callable[[keras.Model], None] = None, log_dir: str = None,
          verbose: bool = True):
    """Train on TFRecord globs (or a function input_context -> per-replica batches, one
    epoch's stream); returns (model, history). An epoch is steps_per_epoch steps, else
    `num_examples` (the training set's size, e.g. `transform.split_examples`) // batch_size.
    Evaluation data: TFRecord globs or a dataset of [B, V, ...] global batches. TensorBoard
    logs go to log_dir (default <model_dir>/logs). Keras' global dtype policy, which the run
    sets for its precision, is the caller's again afterwards."""
    cfg = train_config
    steps = epoch_steps(cfg, num_examples)
    strategy = strategy or tf.distribute.get_strategy()
    if callable(train_data):
        def dataset_fn(input_context, skip):
            return train_data(input_context).skip(skip)
    else:
        def dataset_fn(input_context, skip):
            # Without a seed every start draws a new order: there is no position to return
            # to, and skipping would only read records.
            return input_pipeline.train_dataset(
                train_data, config, cfg.batch_size, sampling=cfg.sampling,
                augment_inputs=cfg.augment, mixup_alpha=cfg.mixup_alpha if cfg.augment else 0.0,
                modality_mixup=cfg.modality_mixup, shuffle_buffer=cfg.shuffle_buffer,
                input_context=input_context, seed=cfg.seed, augment_on=cfg.augment_on,
                skip_batches=skip if cfg.seed is not None else 0)
    eval_source = eval_data
    if eval_data is not None and not isinstance(eval_data, tf.data.Dataset):
        def eval_source(input_context):
            return input_pipeline.eval_dataset(
                eval_data, config, input_context.get_per_replica_batch_size(cfg.batch_size),
                views=cfg.eval_views, input_context=input_context, padded=True)
    with strategies.kept_dtype_policy():
        trainer = Trainer(config, cfg, model_dir, steps, strategy, init_fn, log_dir)
        history = trainer.fit(dataset_fn, eval_source, verbose=verbose)
    return trainer.model, history
