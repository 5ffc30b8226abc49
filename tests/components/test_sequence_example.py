"""The stored JPEG frames: 4:2:0 baseline JPEGs that decode close to the decoded frames."""
import numpy as np
import tensorflow as tf

from components.preprocess.clip_decoder import decode_clip
from components.preprocess.sequence_example import JPEG_QUALITY, encode_jpeg


def test_jpeg_frames_are_420_close_to_the_frame_and_sized_like_tf_encoder(media):
    frame = decode_clip(media["bunny"], end=1.0).frames[10]
    data = encode_jpeg(frame)
    decoded = tf.io.decode_jpeg(data).numpy()
    assert decoded.shape == frame.shape
    assert np.abs(decoded.astype(int) - frame).mean() < 3
    # Baseline SOF0 segment: 3 components, luma sampled 2x2 and chroma 1x1, i.e. 4:2:0.
    sof = data.index(b"\xff\xc0")
    assert data[sof + 9] == 3
    assert [data[sof + 11 + 3 * i] for i in range(3)] == [0x22, 0x11, 0x11]
    reference = len(tf.io.encode_jpeg(frame, quality=JPEG_QUALITY).numpy())
    assert abs(len(data) - reference) / reference < 0.05
    assert len(encode_jpeg(frame, quality=50)) < 0.7 * len(data)  # quality is honoured
