"""Choose the tf.distribute strategy and the mixed-precision policy for a run.

One custom training loop (training.py) serves every strategy; this module only
decides which one from the environment: a TPU name, TF_CONFIG, visible GPUs.
"""
import contextlib
import json
import os

import keras
import tensorflow as tf


def cluster_workers(tf_config: str = None) -> int:
    """Number of tasks (chief + workers) that TF_CONFIG describes; 0 without TF_CONFIG."""
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw:
        return 0
    cluster = json.loads(raw).get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def make_strategy(tpu: str = None) -> tf.distribute.Strategy:
    """TPUStrategy for a named TPU, MultiWorkerMirroredStrategy when TF_CONFIG has more
    than one task, MirroredStrategy on several GPUs, the default strategy otherwise."""
    if tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if cluster_workers() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_precision(strategy: tf.distribute.Strategy, float16: bool = False) -> str:
    """bfloat16 compute on TPU; float16 on GPU when asked (needs loss scaling); else float32.

    Must run before the model is built. Returns the policy name. The policy is process-wide:
    training.train gives the caller's back afterwards (kept_dtype_policy), and the export is
    float32 whatever the training policy (export.float32_model).
    """
    if isinstance(strategy, tf.distribute.TPUStrategy):
        policy = "mixed_bfloat16"
    elif float16 and tf.config.list_logical_devices("GPU"):
        policy = "mixed_float16"
    else:
        policy = "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


@contextlib.contextmanager
def kept_dtype_policy(policy: str = None):
    """Keras' global dtype policy is `policy` (if given) inside the block and the caller's
    again after it: the policy is process-wide, and a run's training precision must not
    leak into what the process builds next (the float32 export, the next run, a test)."""
    previous = keras.mixed_precision.global_policy()
    if policy:
        keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the task that writes checkpoints, logs and the export."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def task_id(strategy: tf.distribute.Strategy) -> str:
    """'worker_1'-style name of this task, for per-task scratch paths."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "local"
    return f"{resolver.task_type}_{resolver.task_id}"
