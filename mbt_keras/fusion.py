"""The multimodal transformer layers of section 3.2, wired from per-modality blocks.

Token streams are dicts {modality: [B, N_m, d]} in the paper's order (RGB, then spectrogram).
Each function applies one fused layer; the blocks stay top-level model layers so their
names match Scenic's (`encoderblock_{l}`, `encoderblock_{l}_spectrogram`). With `maps` (a
dict), each block also records its attention probabilities under its own name, for
attention rollout (`mbt_keras.attention_rollout` follows the token graph wired here).
"""
import keras
from keras import ops

from mbt_keras.tokens import SplitTokens


@keras.saving.register_keras_serializable(package="mbt")
class BottleneckTokens(keras.layers.Layer):
    """The B learned fusion tokens z_fsn of eq. 7, broadcast over the batch of its input."""

    def __init__(self, num_tokens, **kwargs):
        super().__init__(**kwargs)
        if num_tokens < 1:
            raise ValueError(f"BottleneckTokens num_tokens={num_tokens!r}: must be >= 1")
        self.num_tokens = num_tokens

    def build(self, input_shape):
        self.tokens = self.add_weight(name="bottleneck", shape=(1, self.num_tokens, input_shape[-1]),
                                      initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, x):
        return ops.broadcast_to(ops.cast(self.tokens, x.dtype),
                                (ops.shape(x)[0], self.num_tokens, x.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_tokens": self.num_tokens}


def _concat(parts):
    return keras.layers.Concatenate(axis=1)(list(parts))


def _split(x, sizes):
    return SplitTokens(sizes)(x)


def apply_block(block, x, maps=None, **kwargs):
    """`block(x, **kwargs)`; with `maps`, also stores its attention probabilities there."""
    if maps is None:
        return block(x, **kwargs)
    y, maps[block.name] = block(x, return_attention=True, **kwargs)
    return y


def vanilla_layer(block, tokens, maps=None):
    """3.2.1: one weight set over [z_rgb || z_spec]; every token attends to every token."""
    names = list(tokens)
    parts = _split(apply_block(block, _concat(tokens.values()), maps),
                   [tokens[m].shape[1] for m in names])
    return dict(zip(names, parts))


def cross_layer(blocks, tokens, maps=None):
    """Eq. 5-6: modality m's queries attend to all tokens z with m's own weights theta_m."""
    everything = _concat(tokens.values())
    return {m: apply_block(blocks[m], x, maps, context=everything) for m, x in tokens.items()}


def bottleneck_layer(blocks, tokens, bottleneck, update, exchange=True, maps=None):
    """Eq. 8-9: each modality attends only within [z_m || z_fsn].

    `bottleneck` holds each modality's view of z_fsn ({modality: [B, B_fsn, d]}).
    `sequential` (eq. 8-9): RGB updates z_fsn first, the spectrogram stream then updates
    that result. `mean` (released Scenic code): each modality updates its own copy of the
    same z_fsn in parallel and the copies are averaged. `exchange=False` is a test hook that
    keeps each modality's copy to itself, cutting the only cross-modal path.
    Returns (tokens, bottleneck) for the next layer.
    """
    if update not in ("sequential", "mean"):
        raise ValueError(f"bottleneck update={update!r}: expected 'sequential' or 'mean'")
    out_tokens, out_fsn = {}, {}
    previous = None
    for m, x in tokens.items():
        fsn = previous if (exchange and update == "sequential" and previous is not None) \
            else bottleneck[m]
        out_tokens[m], out_fsn[m] = _split(apply_block(blocks[m], _concat([x, fsn]), maps),
                                           [x.shape[1], fsn.shape[1]])
        previous = out_fsn[m]
    if exchange and update == "mean" and len(out_fsn) > 1:
        shared = keras.layers.Average()(list(out_fsn.values()))
        out_fsn = {m: shared for m in out_fsn}
    elif exchange and update == "sequential":
        out_fsn = {m: previous for m in out_fsn}
    return out_tokens, out_fsn
