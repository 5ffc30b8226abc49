"""Learning-rate schedule of the paper (section 4.2): linear warmup for 2.5 epochs,
then cosine decay to zero, with a base learning rate of 0.5 at batch size 64.

Scaling rule: the peak learning rate is base_lr * global_batch / 64 (linear
scaling, Goyal et al.), so the paper's recipe is reproduced exactly at batch 64
and keeps the same per-example step size at any other batch.
"""
import math

import keras
import tensorflow as tf

REFERENCE_BATCH = 64


def peak_learning_rate(base_learning_rate: float, global_batch: int) -> float:
    """base_lr * global_batch / 64."""
    return base_learning_rate * global_batch / REFERENCE_BATCH


@keras.saving.register_keras_serializable(package="mbt")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """lr(s) = peak * s / W for s < W, else peak * (1 + cos(pi * (s - W) / (S - W))) / 2."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps "
                             f"({total_steps}) and total_steps >= 1")
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = self.peak * step / max(self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps)
                                    / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, warmup, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}


def paper_schedule(base_learning_rate: float, global_batch: int, steps_per_epoch: int,
                   epochs: int, warmup_epochs: float = 2.5) -> WarmupCosine:
    """The paper's schedule for a run of `epochs` x `steps_per_epoch` steps."""
    total = max(epochs * steps_per_epoch, 1)
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total)
    return WarmupCosine(peak_learning_rate(base_learning_rate, global_batch), warmup, total)
