"""The Trainer under MirroredStrategy over two logical CPU devices, for test_replicated:
`python -m tests.mbt_keras.replicated_job WORK_DIR OUT.json`. The devices must be made
before TensorFlow starts, hence a process of its own.

Measures evaluation on two replicas against one device (the same weights) and which
replica scored how many views, and a float16 step in which only replica 1's gradient
overflows.
"""
import collections
import json
import os
import sys

import numpy as np

VIEWS = 2


def _counting(trainer, computed: collections.Counter, shapes: set):
    """Makes the trainer's evaluation count the views each replica scores (`computed`: of
    clips, not padding) and note the [clips, views] shape of every batch it computes."""
    import tensorflow as tf
    score = trainer._replica_scores

    def counted(inputs, labels, valid=None):
        shape = tf.shape(next(iter(inputs.values())))
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        clips = tf.reduce_sum(valid) if valid is not None else tf.cast(shape[0], tf.float32)

        def note(r, n, c, v):
            computed.update({int(r): int(n)})
            shapes.add((int(c), int(v)))
        tf.py_function(note, [replica, tf.cast(clips, tf.int32) * shape[1], shape[0], shape[1]],
                       [])
        return score(inputs, labels, valid)
    trainer._replica_scores = counted


def evaluation(work_dir, one, two) -> dict:
    """Metrics of one device and of two replicas over the same clips, read from TFRecords as
    `training.train` reads them (each replica its padded batches: 8 clips, and 7, which
    leave replica 1 a clip short), and from a dataset of global batches whose last batch
    leaves replica 1 empty."""
    from mbt_keras import input_pipeline, training
    from mbt_keras.config import from_preset
    from tests.mbt_keras.tfrecord_fixtures import sequence_example, write_tfrecord

    config = from_preset("mbt-micro", num_classes=6)
    # Clips of noise: clips alike would score alike, and ties leave mAP to the clips' order.
    rng = np.random.default_rng(0)
    examples = [sequence_example(rng.integers(0, 256, (20, 40, 48, 3), dtype=np.uint8),
                                 rng.normal(-4.0, 3.0, (200, 128)).astype(np.float32),
                                 [i % 6, (i + 2) % 6], 10.0) for i in range(8)]
    records = write_tfrecord(os.path.join(work_dir, "eval.tfrecord.gz"), examples)
    seven = write_tfrecord(os.path.join(work_dir, "seven.tfrecord"), examples[:7])
    train_config = training.TrainConfig(batch_size=4, eval_views=VIEWS, seed=0)
    single = training.Trainer(config, train_config, os.path.join(work_dir, "one"), 1, one)
    weights = single.model.get_weights()
    pair = training.Trainer(config, train_config, os.path.join(work_dir, "two"), 1, two,
                            init_fn=lambda model: model.set_weights(weights))
    computed, shapes = collections.Counter(), set()
    _counting(pair, computed, shapes)

    def per_replica(files):
        return lambda context: input_pipeline.eval_dataset(
            files, config, context.get_per_replica_batch_size(4), views=VIEWS,
            input_context=context, padded=True)

    def measured(one_device, two_replicas):
        result = {"one": one_device, "two": two_replicas(),
                  "views": {str(r): n for r, n in computed.items()}, "shapes": sorted(shapes)}
        computed.clear()
        shapes.clear()
        return result
    five = input_pipeline.eval_dataset(records, config, 5, views=VIEWS).unbatch().take(5).batch(4)
    return {
        "records": measured(single.evaluate(per_replica(records)),
                            lambda: pair.evaluate(per_replica(records))),
        "seven": dict(measured(single.evaluate(per_replica(seven)),
                               lambda: pair.evaluate(per_replica(seven))),
                      unpadded=single.evaluate(input_pipeline.eval_dataset(seven, config, 4,
                                                                           views=VIEWS))),
        "uneven": measured(single.evaluate(five), lambda: pair.evaluate(five))}


def loss_scaling(work_dir, two) -> dict:
    """float16 steps on two replicas: clean ones until one is applied (the first overflow
    on every replica while the scale comes down from 2^15), then one in which only replica
    1's gradient holds an inf, then a clean one."""
    import keras
    import tensorflow as tf
    from mbt_keras import strategy as strategies, training
    from mbt_keras.config import from_preset

    def mixed_float16(strategy, float16=False):
        # set_precision keeps float32 without a GPU; loss scaling is what is under test.
        keras.mixed_precision.set_global_policy("mixed_float16")
        return "mixed_float16"
    strategies.set_precision = mixed_float16
    config = from_preset("mbt-micro", num_classes=4)
    train_config = training.TrainConfig(epochs=1, batch_size=4, steps_per_epoch=2,
                                        warmup_epochs=0.0, augment=False, mixup_alpha=0.0,
                                        base_learning_rate=1.0, seed=0)
    trainer = training.Trainer(config, train_config, os.path.join(work_dir, "fp16"), 2, two)
    overflow = tf.Variable(False, trainable=False)
    gradients = trainer._gradients_fn

    def overflowing_on_replica_1(inputs, labels, plan=None):
        loss, grads = gradients(inputs, labels, plan)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        inf = tf.where(tf.logical_and(overflow, tf.equal(replica, 1)), np.inf, 0.0)
        return loss, [grads[0] + tf.cast(inf, grads[0].dtype)] + list(grads[1:])
    trainer._gradients_fn = overflowing_on_replica_1

    rng = np.random.default_rng(0)
    inputs = {"rgb": rng.random((2, 2, 32, 32, 3), dtype=np.float32),
              "spec": rng.normal(-4.0, 3.0, (2, 96, 128)).astype(np.float32)}
    labels = (rng.random((2, 4)) < 0.4).astype(np.float32)
    iterator = iter(two.distribute_datasets_from_function(
        lambda _: tf.data.Dataset.from_tensors((inputs, labels)).repeat()))

    def state():
        """Per replica: (its copy of the weights, its loss scale)."""
        copies = [two.experimental_local_results(v.value) for v in trainer.model.trainable_variables]
        scales = two.experimental_local_results(trainer.optimizer.dynamic_scale.value)
        return [([np.array(c[r]) for c in copies], float(np.array(scales[r]))) for r in range(2)]

    def moved(before, after):
        return max(float(np.abs(a - b).max()) for a, b in zip(before, after))
    settled = state()
    for _ in range(8):
        trainer.train_steps(iterator)
        settled, before = state(), settled
        if moved(before[0][0], settled[0][0]) > 0:
            break
    overflow.assign(True)
    trainer.train_steps(iterator)
    overflowed = state()
    overflow.assign(False)
    trainer.train_steps(iterator)
    clean = state()
    return {"replicas": [{"scale_before_overflow": settled[r][1],
                          "scale_after_overflow": overflowed[r][1],
                          "overflow_step_finite": all(np.isfinite(w).all()
                                                      for w in overflowed[r][0]),
                          "overflow_step_moved": moved(settled[r][0], overflowed[r][0]),
                          "clean_step_finite": all(np.isfinite(w).all() for w in clean[r][0]),
                          "clean_step_moved": moved(overflowed[r][0], clean[r][0]),
                          "differs_from_replica_0": moved(clean[0][0], clean[r][0])}
                         for r in range(2)]}


def main(work_dir: str, out: str) -> int:
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    one = tf.distribute.get_strategy()
    two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {"evaluation": evaluation(work_dir, one, two),
               "loss_scaling": loss_scaling(work_dir, two)}
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
