"""Read Flax checkpoints (what Scenic writes) with msgpack and NumPy only.

`flax.serialization` stores a train state as a msgpack map whose array leaves are
msgpack extension objects; decoding them here means importing the released MBT
models needs neither JAX nor Flax.
"""
import os
import re

import msgpack
import numpy as np

from mbt_keras.user_error import UserError

# Flax's extension type codes (flax.serialization._MsgpackExtType).
EXT_NDARRAY = 1
EXT_NATIVE_COMPLEX = 2
EXT_NPSCALAR = 3
# Arrays over Flax's MAX_CHUNK_SIZE are written as this dict of 1-D pieces.
CHUNKED_ARRAY = "__msgpack_chunked_array__"


def _dtype(name: bytes) -> np.dtype:
    return np.dtype(name.decode())


def _ndarray(data: bytes) -> np.ndarray:
    """An ndarray leaf: msgpack (shape, dtype name, C-order bytes); read-only, no copy."""
    shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
    if dtype_name == b"bfloat16":
        # bfloat16 is the top half of a float32: widen without needing ml_dtypes.
        bits = np.frombuffer(buffer, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    return np.frombuffer(buffer, dtype=_dtype(dtype_name)).reshape(shape)


def _ext_hook(code: int, data: bytes):
    if code == EXT_NDARRAY:
        return _ndarray(data)
    if code == EXT_NPSCALAR:
        return _ndarray(data)[()]
    if code == EXT_NATIVE_COMPLEX:
        real, imag = msgpack.unpackb(data)
        return complex(real, imag)
    raise UserError(f"unknown msgpack extension type {code} (not a Flax checkpoint?)")


def _unchunk(tree):
    if not isinstance(tree, dict):
        return tree
    if tree.get(CHUNKED_ARRAY):
        shape = [tree["shape"][str(i)] for i in range(len(tree["shape"]))]
        chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
        return np.concatenate(chunks).reshape(shape)
    return {key: _unchunk(value) for key, value in tree.items()}


def latest_checkpoint_file(path: str) -> str:
    """`path` itself, or the highest-step `checkpoint_<N>` file in a checkpoint directory;
    local or any tf.io.gfile file system (a Scenic workdir on gs://)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  # only to read files
    if not tf.io.gfile.isdir(path):
        return path
    steps = {int(m.group(1)): name for name in tf.io.gfile.listdir(path)
             if (m := re.fullmatch(r"checkpoint_(\d+)", name))}
    if not steps:
        raise FileNotFoundError(f"no checkpoint_<step> file in directory {path}")
    return os.path.join(path, steps[max(steps)])


def read_state(path: str) -> dict:
    """The whole saved train state as nested dicts of NumPy arrays and Python scalars."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    path = latest_checkpoint_file(path)
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        state = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as e:
        raise UserError(f"{path} is not a Flax msgpack checkpoint: {e}") from e
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a Flax checkpoint: top level is {type(state).__name__}")
    return _unchunk(state)


def find_params(state: dict):
    """The model parameters inside a train state, and where they were found.

    optax-era Scenic saves `params`; flax.optim-era Scenic saves `optimizer.target`,
    and older states nest a further `params` under it.
    """
    for where in (("params",), ("optimizer", "target", "params"), ("optimizer", "target")):
        node = state
        for key in where:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node:
            if where == ("params",) and isinstance(node.get("params"), dict):
                return node["params"], "params.params"
            return node, ".".join(where)
    raise UserError("no model parameters in checkpoint: expected `params` or "
                    f"`optimizer.target[.params]`; top-level keys: {sorted(state)}")


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': x}} -> {'a/b': x}, the names the import reports and checks."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def read_params(path: str):
    """Flat {name: ndarray} of a checkpoint's model parameters, and where they sat."""
    params, where = find_params(read_state(path))
    return {k: np.asarray(v) for k, v in flatten(params).items()}, where
