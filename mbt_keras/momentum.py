"""SGD with momentum as the authors' code applies it (paper 4.2; Scenic's flax.optim.Momentum,
optax.sgd): v <- beta v + g; p <- p - lr v.

Keras' SGD keeps m <- beta m - lr g; p <- p + m instead: the learning rate goes into the
velocity at each step rather than multiplying it at the update, so the two part whenever the
learning rate changes (every step of the warm-up and the cosine decay). With a constant
learning rate they are the same optimiser.
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mbt")
class Momentum(keras.optimizers.Optimizer):
    """Heavy-ball momentum with the learning rate applied to the velocity, not the gradient.

    No Nesterov and no weight decay: Scenic's MBT configs use neither (an L2 term, when
    wanted, belongs in the loss as Scenic's `l2_decay_factor` puts it).
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, name="momentum", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum!r}: must be in [0, 1)")
        self.momentum = float(momentum)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = [self.add_variable_from_reference(v, "velocity") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        velocity = self.velocities[self._get_variable_index(variable)]
        gradient = ops.cast(gradient, variable.dtype)
        self.assign(velocity, ops.add(ops.multiply(velocity, self.momentum), gradient))
        self.assign_sub(variable, ops.multiply(ops.cast(learning_rate, variable.dtype), velocity))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum}
