"""The exported SavedModel loads and runs in TensorFlow's C SavedModel loader, the one
`tensorflow_model_server` links, with no Python: `c_loader/run_signature.c` is compiled
against the installed TensorFlow wheel's C API and answers as the Python SavedModel does,
refusals included.

The C program reads each signature's tensor names from the MetaGraphDef the loader returns,
as the server does; Python only writes the request tensors to files and reads the answers.
"""
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from mbt_keras import contract
from serving import model_contract
from serving.client import predict_saved_model, read_window
from tests.serving.conftest import CLIP

PREDICT_METHOD = "tensorflow/serving/predict"
C_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c_loader",
                        "run_signature.c")


@pytest.fixture(scope="module")
def run_signature(tmp_path_factory):
    """The C program, compiled once per module against the installed wheel's C API headers
    and linked to its libtensorflow_cc / libtensorflow_framework."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("no C compiler: this test builds a C program against TensorFlow's C API; "
                    "install one (Debian: apt-get install gcc)")
    lib = tf.sysconfig.get_lib()
    major = tf.version.VERSION.split(".")[0]  # the wheel's libraries end in .so.<major>
    binary = str(tmp_path_factory.mktemp("c_loader") / "run_signature")
    # -isystem: warnings are errors in our C, not in TensorFlow's headers.
    command = [compiler, "-std=c11", "-D_GNU_SOURCE", "-O1", "-Wall", "-Wextra", "-Werror",
               "-isystem", tf.sysconfig.get_include(), C_SOURCE, "-o", binary, f"-L{lib}",
               f"-l:libtensorflow_cc.so.{major}", f"-l:libtensorflow_framework.so.{major}",
               f"-Wl,-rpath,{lib}"]
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(f"compiling {C_SOURCE} failed:\n{' '.join(command)}\n{built.stderr}")
    return binary


def _write_tensor(path: str, value: np.ndarray):
    """The C program's tensor file: dtype, rank, dims, then values (strings length-prefixed)."""
    with open(path, "wb") as f:
        f.write(struct.pack("=ii", tf.as_dtype(value.dtype).as_datatype_enum, value.ndim))
        f.write(struct.pack(f"={value.ndim}q", *value.shape))
        if value.dtype == object:
            for item in value.flat:
                f.write(struct.pack("=q", len(item)) + item)
        else:
            f.write(np.ascontiguousarray(value).tobytes())


def _read_tensor(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        data = f.read()
    dtype_enum, rank = struct.unpack_from("=ii", data)
    shape = struct.unpack_from(f"={rank}q", data, 8)
    offset, dtype = 8 + 8 * rank, tf.as_dtype(dtype_enum)
    if dtype != tf.string:
        return np.frombuffer(data, dtype.as_numpy_dtype, offset=offset).reshape(shape)
    items = []
    for _ in range(int(np.prod(shape))):
        (size,) = struct.unpack_from("=q", data, offset)
        items.append(data[offset + 8:offset + 8 + size])
        offset += 8 + size
    return np.array(items, dtype=object).reshape(shape)


def _run(binary: str, saved_model: str, signature: str, inputs: dict, work) -> tuple:
    """(TF status code, its message, {output alias: array}) of the signature run in C, once
    the program found it a Predict signature (the server's Predict refuses other methods)."""
    work.mkdir()
    args = []
    for alias, value in inputs.items():
        _write_tensor(str(work / alias), value)
        args.append(f"{alias}={work / alias}")
    done = subprocess.run([binary, saved_model, signature, str(work), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode in (0, 2), f"run_signature failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.startswith(f"method_name {PREDICT_METHOD}\n"), done.stdout
    status_line = done.stdout.index("status ")
    code, _, message = done.stdout[status_line + len("status "):].partition("\n")
    outputs = {name[:-len(".tensor")]: _read_tensor(str(work / name))
               for name in os.listdir(work) if name.endswith(".tensor")}
    return int(code), message.strip(), outputs


@pytest.fixture(scope="module")
def window(exported):
    """The request `mbt predict` sends for the model's own window of a real H.264/AAC clip."""
    num_frames, seconds, _ = model_contract.window_for(model_contract.from_saved_model(exported[1]))
    return read_window(CLIP, num_frames=num_frames, seconds=seconds).inputs


def test_serving_default_in_c_scores_as_the_python_saved_model(run_signature, exported, window,
                                                                 tmp_path):
    code, message, outputs = _run(run_signature, exported[1], contract.SIG_SERVING, window,
                                  tmp_path / "run")
    assert code == 0, message
    expected = predict_saved_model(exported[1], window)
    assert set(outputs) == set(expected)
    for name in (contract.OUT_SCORES, contract.OUT_TOP_K_SCORES):
        np.testing.assert_allclose(outputs[name], expected[name], rtol=0, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(outputs[contract.OUT_TOP_K_NAMES],
                                  expected[contract.OUT_TOP_K_NAMES])


def test_input_contract_signature_in_c_returns_the_asset(run_signature, exported, tmp_path):
    code, message, outputs = _run(run_signature, exported[1], contract.SIG_CONTRACT, {},
                                  tmp_path / "run")
    assert code == 0, message
    with open(os.path.join(exported[1], "assets", contract.CONTRACT_ASSET), "rb") as f:
        asset = f.read()
    in_python = predict_saved_model(exported[1], {}, contract.SIG_CONTRACT)
    assert outputs[contract.OUT_CONTRACT].item() == asset == in_python[contract.OUT_CONTRACT]


def test_nan_waveform_in_c_is_invalid_argument_naming_the_sample(run_signature, exported, window,
                                                                  tmp_path):
    nan = {**window, contract.IN_WAVEFORM: window[contract.IN_WAVEFORM].copy()}
    nan[contract.IN_WAVEFORM][0, 7] = np.nan
    code, message, outputs = _run(run_signature, exported[1], contract.SIG_SERVING, nan,
                                  tmp_path / "run")
    assert (code, outputs) == (tf.errors.INVALID_ARGUMENT, {}), message
    assert "input waveform[0, 7]: value nan is not finite" in message


def test_a_version_without_variables_loads_in_c_and_fails_every_run(run_signature, exported,
                                                                    window, tmp_path):
    """What the official server would do with a push that lost its variables/ (docs/serving.md):
    TensorFlow's loader restores nothing when the variables index is missing and still loads,
    so the version would go AVAILABLE and fail each Predict; `mbt serve` refuses to load it."""
    broken = tmp_path / "without_variables"
    shutil.copytree(exported[1], broken)
    shutil.rmtree(broken / "variables")
    code, message, outputs = _run(run_signature, str(broken), contract.SIG_SERVING, window,
                                  tmp_path / "run")
    assert (code, outputs) == (tf.errors.FAILED_PRECONDITION, {}), message
    assert "Could not find variable" in message
