"""One training process of test_multi_worker: `python -m tests.mbt_keras.multi_worker_job
MODEL_DIR OUT.npz`. Uses MultiWorkerMirroredStrategy when TF_CONFIG names a cluster.

Deterministic on purpose: fixed data in file order, no augmentation, no dropout or
drop-path (mbt-micro), a seeded initialisation. Each epoch ends with an evaluation of 7
clips in global batches of 4, which every worker takes part in.
"""
import sys

import numpy as np

from mbt_keras import strategy as strategies

GLOBAL_BATCH = 8
STEPS = 3


def dataset_fn(input_context):
    import tensorflow as tf
    rng = np.random.default_rng(0)
    n = GLOBAL_BATCH * STEPS
    features = {"rgb": rng.random((n, 2, 32, 32, 3), dtype=np.float32),
                "spec": rng.normal(-4.0, 3.0, (n, 96, 128)).astype(np.float32)}
    labels = (rng.random((n, 4)) < 0.4).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return dataset.batch(input_context.get_per_replica_batch_size(GLOBAL_BATCH)).repeat()


def eval_dataset():
    """7 clips x 2 views of noise (clips alike would tie, leaving mAP to their order)."""
    import tensorflow as tf
    rng = np.random.default_rng(1)
    features = {"rgb": rng.random((7, 2, 2, 32, 32, 3), dtype=np.float32),
                "spec": rng.normal(-4.0, 3.0, (7, 2, 96, 128)).astype(np.float32)}
    labels = (rng.random((7, 4)) < 0.4).astype(np.float32)
    labels[:, 0] = np.arange(7) % 2  # every class has a positive and a negative
    labels[:, 1] = 1 - labels[:, 0]
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(4)


def main(model_dir, out_path):
    strategy = strategies.make_strategy()
    import keras

    from mbt_keras import training
    from mbt_keras.config import from_preset

    keras.utils.set_random_seed(0)
    config = from_preset("mbt-micro")
    train_config = training.TrainConfig(epochs=1, batch_size=GLOBAL_BATCH, steps_per_epoch=STEPS,
                                        warmup_epochs=0.0, augment=False, mixup_alpha=0.0)
    initial = []

    def remember_initial(model):
        initial.extend(np.array(w) for w in model.weights)

    model, history = training.train(config, train_config, model_dir, dataset_fn,
                                    eval_data=eval_dataset(), strategy=strategy,
                                    init_fn=remember_initial, verbose=False)
    final = [np.array(w) for w in model.weights]
    moved = max(float(np.abs(a - b).max()) for a, b in zip(initial, final))
    np.savez(out_path, replicas=strategy.num_replicas_in_sync, loss=history[-1]["loss"],
             val_mAP=history[-1].get("val_mAP", np.nan), moved=moved, *final)


if __name__ == "__main__":
    main(*sys.argv[1:3])
