"""The exported signatures refuse what the model cannot use: a real server process, the
official TF Serving stubs, INVALID_ARGUMENT naming the input, the index and the reason."""
import re
import struct

import grpc
import numpy as np
import pytest
import tensorflow as tf

from mbt_keras import contract
from serving.client import PredictClient, predict_request, predict_saved_model
from tests.serving.conftest import MODEL_NAME

TF_TEXT = ("Graph execution", "{{node", "jpeg::", "Detected at", "assertion failed", "[Op:")


def _jpeg(height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return tf.io.encode_jpeg(pixels).numpy()


def _with_size_in_header(jpeg: bytes, height: int, width: int) -> bytes:
    """The JPEG with its frame header (SOF0) claiming height x width: a huge image to the
    header reader, without sending one."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[:sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9:]


def _replaced(frames, index, jpeg):
    frames = frames.copy()
    frames[index] = jpeg
    return frames


def _bad_inputs(clip):
    """{problem: (inputs, signature, the message it must get)}"""
    frames, wave = clip[contract.IN_FRAMES_JPEG], clip[contract.IN_WAVEFORM]
    assert frames.shape[1] == 4  # the micro model samples 2: frames 1 and 3 are never decoded

    def waveform(values):
        return {contract.IN_FRAMES_JPEG: frames, contract.IN_WAVEFORM: values.astype(np.float32)}

    def jpegs(values):
        return {contract.IN_FRAMES_JPEG: values, contract.IN_WAVEFORM: wave}

    nan, huge = wave.copy(), wave.copy()
    nan[0, 7], huge[0, 5] = np.nan, 1e30
    truncated = frames[0, 3][:len(frames[0, 3]) // 2]
    uint8 = {contract.IN_FRAMES_UINT8: np.zeros((1, 3, 1, 1, 3), np.uint8),
             contract.IN_WAVEFORM: wave}
    needs = r"the model needs at least 15360 \(0\.96 s at 16000 Hz\)"
    return {
        "NaN sample": (waveform(nan), contract.SIG_SERVING,
                       r"input waveform\[0, 7\]: value nan is not finite"),
        "1e30 sample": (waveform(huge), contract.SIG_SERVING,
                        r"input waveform\[0, 5\]: value 1e\+30 is outside \[-2, 2\]"),
        "empty waveform": (waveform(wave[:, :0]), contract.SIG_SERVING,
                           r"input waveform has 0 samples per clip; " + needs),
        "0.1 s waveform": (waveform(wave[:, :1600]), contract.SIG_SERVING,
                           r"input waveform has 1600 samples per clip; " + needs),
        "more samples than the bound": (
            waveform(np.zeros((1, contract.MAX_WAVEFORM_SAMPLES + 1))), contract.SIG_SERVING,
            rf"input waveform has {contract.MAX_WAVEFORM_SAMPLES + 1} samples per clip, more "
            rf"than the bound of {contract.MAX_WAVEFORM_SAMPLES}"),
        "batch of 0": ({contract.IN_FRAMES_JPEG: frames[:0], contract.IN_WAVEFORM: wave[:0]},
                       contract.SIG_SERVING, r"input frames has batch size 0"),
        "two waveforms for one clip": (waveform(np.concatenate([wave, wave])), contract.SIG_SERVING,
                                       r"inputs frames and waveform hold 1 and 2 clips"),
        "more frames than the bound": (
            jpegs(np.repeat(frames[:, :1], contract.MAX_FRAMES + 1, axis=1)), contract.SIG_SERVING,
            rf"input frames has {contract.MAX_FRAMES + 1} frames per clip, more than the bound "
            rf"of {contract.MAX_FRAMES}"),
        "unsampled frame not a JPEG": (jpegs(_replaced(frames, (0, 3), b"not a jpeg")),
                                       contract.SIG_SERVING,
                                       r"input frames\[0, 3\]: not a JPEG image"),
        "unsampled frame truncated": (jpegs(_replaced(frames, (0, 3), truncated)),
                                      contract.SIG_SERVING,
                                      r"input frames\[0, 3\]: not a decodable JPEG"),
        "1x1 JPEG": (jpegs(_replaced(frames, (0, 1), _jpeg(1, 1))), contract.SIG_SERVING,
                     r"input frames\[0, 1\]: image is 1x1 px; the model needs at least 16 px"),
        "16000x16000 JPEG": (
            jpegs(_replaced(frames, (0, 2), _with_size_in_header(_jpeg(40, 40), 16000, 16000))),
            contract.SIG_SERVING,
            r"input frames\[0, 2\]: image is 16000x16000 px; larger than the bound of 4096 px"),
        "1x1 uint8 frames": (uint8, contract.SIG_UINT8,
                             r"input frames_uint8\[0, 0\]: image is 1x1 px"),
    }


def test_each_bad_input_is_refused_naming_input_and_index_and_the_server_keeps_serving(
        server_process, exported, clip_request):
    target, _, log = server_process
    client = PredictClient(target, MODEL_NAME)
    expected = predict_saved_model(exported[1], clip_request)[contract.OUT_SCORES]
    for problem, (inputs, signature, message) in _bad_inputs(clip_request).items():
        refused_before = sum("refused Predict" in line for line in log)
        with pytest.raises(grpc.RpcError) as error:
            client.stub.Predict(predict_request(inputs, MODEL_NAME, signature), timeout=60)
        details = error.value.details() or ""
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (problem, details)
        assert re.search(message, details), (problem, details)
        assert not any(text in details for text in TF_TEXT), (problem, details)
        outputs, _ = client.predict(clip_request)  # still serving, and right
        np.testing.assert_allclose(outputs[contract.OUT_SCORES], expected, atol=1e-6)
        refused = [line for line in log if "refused Predict" in line]
        assert len(refused) == refused_before + 1, (problem, refused[refused_before:])
    client.close()


def test_frames_of_different_sizes_in_one_clip_are_each_cropped_on_their_own(
        server, exported, clip_request):
    """A first frame larger than the others used to fail the whole request."""
    target, _ = server
    frames = clip_request[contract.IN_FRAMES_JPEG]
    first = tf.io.decode_jpeg(frames[0, 0])
    large = tf.io.encode_jpeg(tf.cast(tf.image.resize(first, tf.shape(first)[:2] * 2), tf.uint8),
                              quality=95).numpy()
    inputs = {**clip_request, contract.IN_FRAMES_JPEG: _replaced(frames, (0, 0), large)}
    outputs, _ = PredictClient(target, MODEL_NAME).predict(inputs)
    local = predict_saved_model(exported[1], inputs)
    np.testing.assert_allclose(outputs[contract.OUT_SCORES], local[contract.OUT_SCORES], atol=1e-6)
    # The larger copy of frame 0 is cropped and resized to nearly what frame 0 gives.
    np.testing.assert_allclose(outputs[contract.OUT_SCORES],
                               predict_saved_model(exported[1], clip_request)[contract.OUT_SCORES],
                               atol=0.05)
