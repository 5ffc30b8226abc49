"""Every refusal of the request path, through both front doors of a real server process (the
official TF Serving stubs; a plain HTTP client): the same status (INVALID_ARGUMENT / 400,
NOT_FOUND / 404) and the same message naming the input, the index and the reason."""
import re
import time

import numpy as np
import pytest
import tensorflow as tf

from mbt_keras import contract
from serving.client import predict_saved_model
from tests.serving.doors import GrpcDoor, Refused, RestDoor
from tests.serving.refusal_cases import TF_TEXT, _replaced, bad_requests


@pytest.fixture(params=["grpc", "rest"])
def door(request, server_process):
    target, _, _, rest_url, _ = server_process
    opened = GrpcDoor(target) if request.param == "grpc" else RestDoor(rest_url)
    yield opened
    opened.close()


def test_each_bad_request_is_refused_alike_by_both_doors_and_the_server_keeps_serving(
        door, server_process, exported, clip_request):
    log = server_process[2]
    expected = predict_saved_model(exported[1], clip_request)[contract.OUT_SCORES]
    for problem, case in bad_requests(clip_request).items():
        refused_before = sum("refused Predict" in line for line in log)
        with pytest.raises(Refused) as error:
            door.predict(case.inputs, case.signature, model=case.model, version=case.version)
        assert error.value.code == case.code, (door.name, problem, error.value)
        assert re.search(case.message, error.value.message), (door.name, problem, error.value)
        assert not any(text in error.value.message for text in TF_TEXT), (problem, error.value)
        outputs, _ = door.predict(clip_request)  # still serving, and right
        np.testing.assert_allclose(outputs[contract.OUT_SCORES], expected, atol=1e-6)
        deadline = time.monotonic() + 10  # the log reaches the test through a pipe
        while sum("refused Predict" in line for line in log) == refused_before and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        refused = [line for line in log if "refused Predict" in line]
        assert len(refused) == refused_before + 1, (problem, refused[refused_before:])


def test_frames_of_different_sizes_in_one_clip_are_each_cropped_on_their_own(
        server, exported, clip_request):
    """A first frame larger than the others used to fail the whole request."""
    frames = clip_request[contract.IN_FRAMES_JPEG]
    first = tf.io.decode_jpeg(frames[0, 0])
    large = tf.io.encode_jpeg(tf.cast(tf.image.resize(first, tf.shape(first)[:2] * 2), tf.uint8),
                              quality=95).numpy()
    inputs = {**clip_request, contract.IN_FRAMES_JPEG: _replaced(frames, (0, 0), large)}
    outputs, _ = GrpcDoor(server[0]).predict(inputs)
    local = predict_saved_model(exported[1], inputs)
    np.testing.assert_allclose(outputs[contract.OUT_SCORES], local[contract.OUT_SCORES], atol=1e-6)
    # The larger copy of frame 0 is cropped and resized to nearly what frame 0 gives.
    np.testing.assert_allclose(outputs[contract.OUT_SCORES],
                               predict_saved_model(exported[1], clip_request)[contract.OUT_SCORES],
                               atol=0.05)
