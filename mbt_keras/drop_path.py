"""Stochastic depth (Huang et al. 2016), the paper's drop-path regulariser (section 4.2)."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mbt")
class DropPath(keras.layers.Layer):
    """Drops a whole residual branch per example with probability `rate`.

    Kept branches are scaled by 1 / (1 - rate) so inference needs no rescaling (timm's
    convention; Scenic drops per example too).
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath rate={rate!r}: must be in [0, 1)")
        self.rate = rate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype))
        return x * mask / ops.cast(keep, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
