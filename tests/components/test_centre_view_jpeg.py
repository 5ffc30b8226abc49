"""The client's JPEGs of only the model's view: the served model decodes the same centre
crop, bit for bit, as from the whole frame's JPEG, for frames of any size and shape."""
import numpy as np
import pytest
import tensorflow as tf

from components.preprocess.clip_decoder import decode_clip
from components.preprocess.jpeg import centre_view_bounds, encode_centre_view, encode_jpeg
from mbt_keras import augment, input_pipeline
from tests.serving.conftest import CLIP

# Landscape, portrait, square, odd sides, sides just over a block, tiny and large frames.
SIZES = ([(256, w) for w in (256, 257, 271, 300, 341, 455, 456, 512, 640)]
         + [(h, 256) for h in (263, 320, 455, 600)]
         + [(103, 174), (284, 124), (17, 33), (720, 1280), (1080, 1920), (401, 399)])


def centre_crop(jpeg: bytes) -> np.ndarray:
    """The uint8 crop the exported signature decodes (before its resize)."""
    return input_pipeline.decode_crops(
        tf.constant([jpeg]), augment.centre_crop_window(tf.constant(jpeg))).numpy()[0]


@pytest.fixture(scope="module")
def picture():
    return decode_clip(CLIP, short_side=None).frames[40]  # a real frame, 1280x720


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("content", ["video", "noise"])
def test_the_centre_crop_decodes_identically_from_the_smaller_jpeg(picture, height, width,
                                                                  content):
    if content == "noise":
        frame = np.random.default_rng(height * width).integers(0, 256, (height, width, 3),
                                                               dtype=np.uint8)
    else:
        frame = tf.cast(tf.image.resize(picture, [height, width]), tf.uint8).numpy()
    whole, view = encode_jpeg(frame, 95), encode_centre_view(frame, 95)
    np.testing.assert_array_equal(centre_crop(view), centre_crop(whole))
    if min(height, width) >= 64 and max(height, width) >= 1.25 * min(height, width):
        assert len(view) < 0.85 * len(whole), "a wide frame's view should be much smaller"


def test_bounds_of_the_demo_frame_size():
    # 256x455: the crop is columns 115..338; blocks from 96 keep the short side and offset.
    assert centre_view_bounds(256, 455) == (0, 256, 96, 359)
    assert centre_view_bounds(455, 256) == (96, 359, 0, 256)
    assert centre_view_bounds(256, 256) == (0, 256, 0, 256)  # nothing to cut
