"""Token-sequence plumbing: split a fused sequence back into its parts, pool for the classifier."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mbt")
class SplitTokens(keras.layers.Layer):
    """Splits [B, sum(sizes), d] along the token axis into [B, size_i, d] pieces."""

    def __init__(self, sizes, **kwargs):
        super().__init__(**kwargs)
        self.sizes = [int(s) for s in sizes]

    def call(self, x):
        bounds = [sum(self.sizes[:i]) for i in range(len(self.sizes) + 1)]
        return [x[:, start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]

    def compute_output_shape(self, input_shape):
        return [(input_shape[0], s, input_shape[-1]) for s in self.sizes]

    def get_config(self):
        return {**super().get_config(), "sizes": self.sizes}


@keras.saving.register_keras_serializable(package="mbt")
class TokenPool(keras.layers.Layer):
    """Classifier input (3.4): the CLS token (`token`) or the mean over all tokens (`gap`)."""

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("token", "gap"):
            raise ValueError(f"TokenPool mode={mode!r}: expected 'token' or 'gap'")
        self.mode = mode

    def call(self, x):
        return x[:, 0] if self.mode == "token" else ops.mean(x, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
