"""One table of every request the server refuses, sent through both front doors (gRPC and
REST) by the tests: the same status and the same message from either."""
import struct
from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf

from mbt_keras import contract
from tests.serving.conftest import MODEL_NAME

# TensorFlow's own wording, which a refusal must not carry.
TF_TEXT = ("Graph execution", "{{node", "jpeg::", "Detected at", "assertion failed", "[Op:")


class Case(NamedTuple):
    inputs: dict
    signature: str
    message: str  # a regex the refusal's message matches
    code: str = "INVALID_ARGUMENT"
    model: str = MODEL_NAME
    version: Optional[int] = None


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


def bad_requests(clip):
    """{problem: Case}: every refusal of the request path, for both doors."""
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
        "NaN sample": Case(waveform(nan), contract.SIG_SERVING,
                       r"input waveform\[0, 7\]: value nan is not finite"),
        "1e30 sample": Case(waveform(huge), contract.SIG_SERVING,
                        r"input waveform\[0, 5\]: value 1e\+30 is outside \[-2, 2\]"),
        "empty waveform": Case(waveform(wave[:, :0]), contract.SIG_SERVING,
                           r"input waveform has 0 samples per clip; " + needs),
        "0.1 s waveform": Case(waveform(wave[:, :1600]), contract.SIG_SERVING,
                           r"input waveform has 1600 samples per clip; " + needs),
        "more samples than the bound": Case(
            waveform(np.zeros((1, contract.MAX_WAVEFORM_SAMPLES + 1))), contract.SIG_SERVING,
            rf"input waveform has {contract.MAX_WAVEFORM_SAMPLES + 1} samples per clip, more "
            rf"than the bound of {contract.MAX_WAVEFORM_SAMPLES}"),
        "batch of 0": Case({contract.IN_FRAMES_JPEG: frames[:0], contract.IN_WAVEFORM: wave[:0]},
                       contract.SIG_SERVING, r"input frames has batch size 0"),
        "two waveforms for one clip": Case(waveform(np.concatenate([wave, wave])), contract.SIG_SERVING,
                                       r"inputs frames and waveform hold 1 and 2 clips"),
        "more frames than the bound": Case(
            jpegs(np.repeat(frames[:, :1], contract.MAX_FRAMES + 1, axis=1)), contract.SIG_SERVING,
            rf"input frames has {contract.MAX_FRAMES + 1} frames per clip, more than the bound "
            rf"of {contract.MAX_FRAMES}"),
        "unsampled frame not a JPEG": Case(jpegs(_replaced(frames, (0, 3), b"not a jpeg")),
                                       contract.SIG_SERVING,
                                       r"input frames\[0, 3\]: not a JPEG image"),
        "unsampled frame truncated": Case(jpegs(_replaced(frames, (0, 3), truncated)),
                                      contract.SIG_SERVING,
                                      r"input frames\[0, 3\]: not a decodable JPEG"),
        "1x1 JPEG": Case(jpegs(_replaced(frames, (0, 1), _jpeg(1, 1))), contract.SIG_SERVING,
                     r"input frames\[0, 1\]: image is 1x1 px; the model needs at least 16 px"),
        "16000x16000 JPEG": Case(
            jpegs(_replaced(frames, (0, 2), _with_size_in_header(_jpeg(40, 40), 16000, 16000))),
            contract.SIG_SERVING,
            r"input frames\[0, 2\]: image is 16000x16000 px; larger than the bound of 4096 px"),
        "1x1 uint8 frames": Case(uint8, contract.SIG_UINT8,
                             r"input frames_uint8\[0, 0\]: image is 1x1 px"),
        "missing input": Case({contract.IN_FRAMES_JPEG: frames}, contract.SIG_SERVING,
                              r"missing input\(s\) \['waveform'\]"),
        "unknown input": Case({**clip, "audio": wave}, contract.SIG_SERVING,
                              r"unknown input\(s\) \['audio'\]"),
        "wrong dtype": Case({**clip, contract.IN_WAVEFORM: wave.astype(str)}, contract.SIG_SERVING,
                            r"'waveform' has dtype string, expected float32"),
        "wrong shape": Case(waveform(wave[0]), contract.SIG_SERVING,
                            r"'waveform' has shape \[\d+\], expected \[-1, -1\]"),
        "unknown signature": Case(clip, "nope", r"signature 'nope' not found"),
        "unknown model": Case(clip, contract.SIG_SERVING, r"model 'nope' not found",
                              "NOT_FOUND", model="nope"),
        "unknown version": Case(clip, contract.SIG_SERVING,
                                r"version 99 of 'mbt' is not loaded", "NOT_FOUND", version=99),
    }


