"""The transformer layer of eq. 2-3 (pre-LN), with the cross-attention form of eq. 6."""
import keras

from mbt_keras.drop_path import DropPath

# Flax/ViT defaults, so imported ViT and Scenic weights reproduce their activations.
LAYER_NORM_EPSILON = 1e-6


@keras.saving.register_keras_serializable(package="mbt")
class MlpBlock(keras.layers.Layer):
    """MLP of eq. 3: Dense_0 -> GELU (tanh approximation, as jax.nn.gelu) -> Dense_1."""

    def __init__(self, mlp_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mlp_dim = mlp_dim
        self.dropout = dropout

    def build(self, input_shape):
        self.dense_0 = keras.layers.Dense(self.mlp_dim, name="Dense_0", dtype=self.dtype_policy,
                                          bias_initializer=keras.initializers.RandomNormal(stddev=1e-6))
        self.dense_1 = keras.layers.Dense(input_shape[-1], name="Dense_1", dtype=self.dtype_policy,
                                          bias_initializer=keras.initializers.RandomNormal(stddev=1e-6))
        self.drop = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.dense_0.build(input_shape)
        self.dense_1.build(tuple(input_shape[:-1]) + (self.mlp_dim,))

    def call(self, x, training=None):
        y = keras.activations.gelu(self.dense_0(x), approximate=True)
        y = self.dense_1(self.drop(y, training=training))
        return self.drop(y, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mlp_dim": self.mlp_dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="mbt")
class TransformerBlock(keras.layers.Layer):
    """z -> y = MSA(LN(z)) + z (eq. 2); out = MLP(LN(y)) + y (eq. 3).

    With `context`, attention becomes MCA(LN(z), LN(context)) (eq. 6): queries come from
    `x` only, keys and values from `context`, and the MLP runs on `x`'s tokens only. This
    is the Cross-Transformer of eq. 5 with this layer's weights as theta_rgb or theta_spec.
    Residual branches pass through dropout and drop-path (stochastic depth).
    `return_attention=True` also returns the attention probabilities [B, heads, N_x, N_context]
    (before attention dropout), for attention rollout (`mbt_keras.attention_rollout`); the
    trained and exported graphs never ask for them.
    """

    def __init__(self, num_heads, mlp_dim, dropout=0.0, attention_dropout=0.0, drop_path=0.0,
                 drop_path_rescale=True, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.drop_path = drop_path
        self.drop_path_rescale = bool(drop_path_rescale)

    def build(self, x_shape, context_shape=None):
        d = x_shape[-1]
        if d % self.num_heads:
            raise ValueError(f"TransformerBlock num_heads={self.num_heads}: must divide the "
                             f"hidden size {d}")
        policy = self.dtype_policy
        self.norm_attention = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name="LayerNorm_0", dtype=policy)
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, d // self.num_heads, dropout=self.attention_dropout,
            name="MultiHeadDotProductAttention_1", dtype=policy)
        self.norm_mlp = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name="LayerNorm_2", dtype=policy)
        self.mlp = MlpBlock(self.mlp_dim, self.dropout, name="MlpBlock_3", dtype=policy)
        self.drop = keras.layers.Dropout(self.dropout, dtype=policy)
        self.drop_branch = DropPath(self.drop_path, rescale=self.drop_path_rescale, dtype=policy)
        self.norm_attention.build(x_shape)
        self.attention.build(x_shape, context_shape or x_shape)
        self.norm_mlp.build(x_shape)
        self.mlp.build(x_shape)

    def call(self, x, context=None, training=None, return_attention=False):
        q = self.norm_attention(x)
        kv = q if context is None else self.norm_attention(context)
        y = self.attention(q, kv, training=training, return_attention_scores=return_attention)
        if return_attention:
            y, probabilities = y
        y = x + self.drop_branch(self.drop(y, training=training), training=training)
        z = self.mlp(self.norm_mlp(y), training=training)
        out = y + self.drop_branch(z, training=training)
        return (out, probabilities) if return_attention else out

    def compute_output_shape(self, x_shape, context_shape=None):
        return x_shape

    def compute_output_spec(self, x, context=None, training=None, return_attention=False):
        # Overridden because compute_output_shape is not told about `return_attention`.
        out = keras.KerasTensor(x.shape, dtype=self.compute_dtype)
        if not return_attention:
            return out
        keys = (x if context is None else context).shape[1]
        return out, keras.KerasTensor((x.shape[0], self.num_heads, x.shape[1], keys),
                                      dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "mlp_dim": self.mlp_dim,
                "dropout": self.dropout, "attention_dropout": self.attention_dropout,
                "drop_path": self.drop_path, "drop_path_rescale": self.drop_path_rescale}
