"""Tokenisation, eq. 1 and 4: linear patch projection E, a CLS token, learned positions p."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mbt")
class PatchEmbedding(keras.layers.Layer):
    """Non-overlapping patches projected to `hidden_size` tokens (E in eq. 1).

    Video [B, F, H, W, C]: per-frame 16x16 patches (kernel [p, p, C, d], as ViT) or, with
    `tubelet_frames` > 0, 16x16xT tubelets (kernel [T, p, p, C, d], as ViViT and the released
    MBT models). Tokens are ordered frame, row, column.
    Spectrogram [B, T, mel]: a T x mel image (AST, Scenic) with `channels` copies of itself
    stacked as channels, so ImageNet RGB kernels load unchanged when channels=3.
    """

    def __init__(self, hidden_size, patch_size, tubelet_frames=0, channels=3, **kwargs):
        super().__init__(**kwargs)
        if tubelet_frames < 0:
            raise ValueError(f"PatchEmbedding tubelet_frames={tubelet_frames!r}: must be >= 0")
        self.hidden_size = hidden_size
        self.patch_size = patch_size
        self.tubelet_frames = tubelet_frames
        self.channels = channels

    def build(self, input_shape):
        self.is_video = len(input_shape) == 5
        self.num_tokens = self.count_tokens(input_shape)
        if self.is_video and input_shape[-1] != self.channels:
            raise ValueError(f"PatchEmbedding channels={self.channels} but the video has "
                             f"{input_shape[-1]} channels")
        p = self.patch_size
        kernel = (p, p, self.channels, self.hidden_size)
        if self.is_video and self.tubelet_frames:
            kernel = (self.tubelet_frames,) + kernel
        self.kernel = self.add_weight(name="kernel", shape=kernel, initializer="lecun_normal")
        self.bias = self.add_weight(name="bias", shape=(self.hidden_size,), initializer="zeros")

    def call(self, x):
        p = self.patch_size
        strides = (p, p)
        if not self.is_video:
            x = ops.repeat(ops.expand_dims(x, -1), self.channels, axis=-1)
        elif self.tubelet_frames:
            strides = (self.tubelet_frames, p, p)
        else:
            x = ops.reshape(x, (-1,) + tuple(x.shape[2:]))
        y = ops.conv(x, ops.cast(self.kernel, x.dtype), strides=strides, padding="valid")
        y = y + ops.cast(self.bias, y.dtype)
        return ops.reshape(y, (-1, self.num_tokens, self.hidden_size))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.count_tokens(input_shape), self.hidden_size)

    def count_tokens(self, input_shape):
        """Tokens per example for an input of `input_shape` (batch first)."""
        p = self.patch_size
        if len(input_shape) == 5:
            _, f, h, w, _ = input_shape
            return (f // (self.tubelet_frames or 1)) * (h // p) * (w // p)
        _, t, mel = input_shape
        return (t // p) * (mel // p)

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "patch_size": self.patch_size, "tubelet_frames": self.tubelet_frames,
                "channels": self.channels}


@keras.saving.register_keras_serializable(package="mbt")
class ClassToken(keras.layers.Layer):
    """Prepends the learned z_cls of eq. 1 (zero-initialised, as ViT and Scenic)."""

    def build(self, input_shape):
        self.cls = self.add_weight(name="cls", shape=(1, 1, input_shape[-1]), initializer="zeros")

    def call(self, x):
        cls = ops.broadcast_to(ops.cast(self.cls, x.dtype), (ops.shape(x)[0], 1, x.shape[-1]))
        return ops.concatenate([cls, x], axis=1)

    def compute_output_shape(self, input_shape):
        n = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], n, input_shape[-1])


@keras.saving.register_keras_serializable(package="mbt")
class PositionEmbedding(keras.layers.Layer):
    """Adds the learned positional embedding p of eq. 1 (one vector per token, CLS included)."""

    def build(self, input_shape):
        self.pos_embedding = self.add_weight(
            name="pos_embedding", shape=(1,) + tuple(input_shape[1:]),
            initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, x):
        return x + ops.cast(self.pos_embedding, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
