"""Stochastic depth (Huang et al. 2016), the paper's drop-path regulariser (section 4.2)."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mbt")
class DropPath(keras.layers.Layer):
    """Drops a whole residual branch per example with probability `rate`.

    `rescale=True` scales kept branches by 1 / (1 - rate), so the branch's expected value
    in training equals its inference value (timm's convention). `rescale=False` keeps
    them as they are, as Scenic's MBT EncoderBlock does (`x * (1 - drop_pattern)`): the
    training-time branch then averages (1 - rate) times its inference value, which is
    what fine-tuning the authors' checkpoints with the authors' code trains.
    Inference is the identity either way.
    """

    def __init__(self, rate=0.0, seed=None, rescale=True, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath rate={rate!r}: must be in [0, 1)")
        self.rate = rate
        self.seed = seed
        self.rescale = bool(rescale)
        self.seed_generator = keras.random.SeedGenerator(seed) if rate > 0 else None

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype))
        return x * mask / ops.cast(keep, x.dtype) if self.rescale else x * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "rescale": self.rescale}
