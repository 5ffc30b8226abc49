"""One training process of test_multi_worker: `python -m tests.mbt_keras.multi_worker_job
MODEL_DIR OUT.npz`. Uses MultiWorkerMirroredStrategy when TF_CONFIG names a cluster.

Deterministic on purpose: fixed data in file order, no augmentation, no dropout or
drop-path (mbt-micro), a seeded initialisation. Each epoch ends with an evaluation of 7
clips from two files, read as `training.train` reads them (each worker its file, in padded
batches of one shape), which every worker takes part in.
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


def eval_files(out_path):
    """7 clips of noise (clips alike would tie, leaving mAP to their order) in two TFRecord
    files of 4 and 3, which `training.train` shards by file: worker 1 runs out a clip before
    worker 0 and steps on with padding. Each process writes its own copy beside its output."""
    from tests.mbt_keras.tfrecord_fixtures import sequence_example, write_tfrecord
    rng = np.random.default_rng(1)
    clips = [sequence_example(rng.integers(0, 256, (20, 40, 48, 3), dtype=np.uint8),
                              rng.normal(-4.0, 3.0, (200, 128)).astype(np.float32),
                              [i % 2, 2 + int(i % 3 == 0)], 10.0) for i in range(7)]
    return [write_tfrecord(f"{out_path}.eval{n}.tfrecord", part)
            for n, part in enumerate((clips[:4], clips[4:]))]


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
                                    eval_data=eval_files(out_path), strategy=strategy,
                                    init_fn=remember_initial, verbose=False)
    final = [np.array(w) for w in model.weights]
    moved = max(float(np.abs(a - b).max()) for a, b in zip(initial, final))
    np.savez(out_path, replicas=strategy.num_replicas_in_sync, loss=history[-1]["loss"],
             val_mAP=history[-1].get("val_mAP", np.nan), moved=moved, *final)


if __name__ == "__main__":
    main(*sys.argv[1:3])
