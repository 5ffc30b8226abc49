"""Matplotlib off-screen, and a figure as the RGB array TensorBoard's image summaries take."""
import io

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display on servers and in the pipeline)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    return plt


def png_bytes(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot().close(figure)
    return buffer.getvalue()


def rgb_array(png: bytes) -> np.ndarray:
    """uint8 [H, W, 3] of PNG bytes."""
    import tensorflow as tf
    return tf.io.decode_png(png, channels=3).numpy()
