"""Shared test set-up: quiet TensorFlow, session-wide media and the image's environment."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory):
    """Three minutes of 64x48 H.264 at 10 fps with a keyframe every 2 s and 16 kHz mono AAC:
    long enough that decoding all of it is 40x the work of one window near its end."""
    from tests.components.conftest import write_clip
    path = str(tmp_path_factory.mktemp("long") / "long.mp4")
    return write_clip(path, 180.0, fps=10, rate=16000, layout="mono", gop=20)


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    """An environment built by kubeflow/Dockerfile's steps (tests/kubeflow/image_env.py), for
    the compiled spec's tasks and the Dataflow workers; skips on a stack the image is not."""
    from tests.kubeflow import image_env
    reason = image_env.skip_reason()
    if reason:
        pytest.skip(reason)
    return image_env.build_image_env(str(tmp_path_factory.mktemp("image")))


@pytest.fixture(scope="session")
def steps_taken():
    """steps_taken(checkpoint_dir): the optimizer's step count in the newest checkpoint of a
    run's checkpoint folder (local or a tf.io.gfile URI)."""
    import tensorflow as tf

    def steps(checkpoint_dir):
        reader = tf.train.load_checkpoint(checkpoint_dir)
        [key] = [k for k in reader.get_variable_to_shape_map() if "iterations" in k]
        return int(reader.get_tensor(key))
    return steps
