"""MBT as a Keras functional model (paper sections 3.1-3.4), built from a ModelConfig.

Layer names follow Scenic's MBT so ViT / Scenic checkpoints map by name:
  embedding, embedding_spectrogram        patch projections E_rgb, E_spec (PatchEmbedding)
  cls_rgb, cls_spec                       CLS tokens (ClassToken; classifier='token' only)
  posembed_input, posembed_input_spectrogram   learned positional embeddings
  bottleneck                              the B fusion tokens (bottleneck fusion only)
  encoderblock_{l}                        RGB block of layer l (the shared block when vanilla)
  encoderblock_{l}_spectrogram            spectrogram block of layer l
    inside a block: LayerNorm_0, MultiHeadDotProductAttention_1 (query/key/value/
    attention_output), LayerNorm_2, MlpBlock_3 (Dense_0, Dense_1)
  encoder_norm                            final LayerNorm shared by all tokens
  pre_logits                              optional Dense + tanh
  output_projection                       the shared linear classifier (all heads' classes)
  logits                                  float32 output [B, sum(num_classes)]
"""
import keras

from mbt_keras import contract
from mbt_keras.config import MODALITIES, ModelConfig
from mbt_keras.fusion import (BottleneckTokens, apply_block, bottleneck_layer, cross_layer,
                              vanilla_layer)
from mbt_keras.patch_embedding import ClassToken, PatchEmbedding, PositionEmbedding
from mbt_keras.tokens import TokenPool
from mbt_keras.transformer_block import LAYER_NORM_EPSILON, TransformerBlock

SUFFIX = {"rgb": "", "spec": "_spectrogram"}


def model_inputs(config: ModelConfig) -> dict:
    """keras.Input per modality: 'rgb' [F, H, W, 3] in [0, 1], 'spec' [T, mel] raw log-mel."""
    shapes = {contract.INPUT_RGB: (config.num_frames, config.image_size, config.image_size, 3),
              contract.INPUT_SPEC: (config.spec_frames, config.mel_bins)}
    return {m: keras.Input(shapes[m], name=m, dtype="float32")
            for m in MODALITIES if m in config.modalities}


def embed(config: ModelConfig, inputs: dict) -> dict:
    """Eq. 1 and 4: normalise, patchify, prepend CLS, add positions, per modality."""
    tokens = {}
    for m, x in inputs.items():
        if m == "rgb":
            if config.rgb_scale == "symmetric":
                x = keras.layers.Rescaling(2.0, offset=-1.0, name="rgb_normalization")(x)
            tubelet = config.tubelet_frames if config.rgb_tokenizer == "tubelet" else 0
            patches = PatchEmbedding(config.hidden_size, config.patch_size, tubelet, channels=3,
                                     name="embedding")
        else:
            x = keras.layers.Rescaling(1.0 / config.spec_std, offset=-config.spec_mean / config.spec_std,
                                       name="spec_normalization")(x)
            patches = PatchEmbedding(config.hidden_size, config.patch_size,
                                     channels=config.spec_channels, name="embedding_spectrogram")
        x = patches(x)
        if config.classifier == "token":
            x = ClassToken(name=f"cls_{m}")(x)
        tokens[m] = PositionEmbedding(name=f"posembed_input{SUFFIX[m]}")(x)
    return tokens


def encode(config: ModelConfig, tokens: dict, *, exchange_bottleneck=True, maps=None) -> list:
    """The L layers of 3.3: unimodal below Lf, fused per config.fusion from Lf on.

    Returns the token dict after each layer (bottleneck tokens excluded).
    `exchange_bottleneck=False` is a test hook (see fusion.bottleneck_layer); `maps` (a dict)
    collects every block's attention probabilities by block name.
    """
    def block(name, layer):
        rate = config.drop_path * layer / max(config.num_layers - 1, 1)
        return TransformerBlock(config.num_heads, config.mlp_dim, dropout=config.dropout,
                                attention_dropout=config.attention_dropout, drop_path=rate,
                                drop_path_rescale=config.stochastic_depth_rescale,
                                name=name)

    history, fsn = [], None
    for layer in range(config.num_layers):
        name = f"encoderblock_{layer}"
        if not config.fused or layer < config.fusion_layer:
            tokens = {m: apply_block(block(name + SUFFIX[m], layer), x, maps)
                      for m, x in tokens.items()}
        elif config.fusion == "vanilla":
            tokens = vanilla_layer(block(name, layer), tokens, maps)
        elif config.fusion == "cross":
            tokens = cross_layer({m: block(name + SUFFIX[m], layer) for m in tokens}, tokens,
                                 maps)
        else:
            if fsn is None:
                shared = BottleneckTokens(config.num_bottlenecks, name="bottleneck")(tokens["rgb"])
                fsn = {m: shared for m in tokens}
            blocks = {m: block(name + SUFFIX[m], layer) for m in tokens}
            tokens, fsn = bottleneck_layer(blocks, tokens, fsn, config.bottleneck_update,
                                           exchange=exchange_bottleneck, maps=maps)
        history.append(tokens)
    return history


def classify(config: ModelConfig, tokens: dict):
    """3.4: shared final LayerNorm, pooling, optional pre-logits, one shared linear classifier.

    `token`: each modality's CLS goes through the same classifier and the logits are
    averaged (late fusion averages only here); training reads the per-modality logits before
    the average (`modality_logits_model`), in MODALITIES order. `gap`: mean over all tokens of
    all modalities. verb_noun uses one projection over verb + noun classes, split by the loss
    (as Scenic).
    """
    norm = (keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="encoder_norm")
            if config.final_norm else None)
    if config.classifier == "token":
        pool = TokenPool("token", name="cls_pool")
        pooled = [pool(tokens[m]) for m in MODALITIES if m in tokens]
        pooled = [norm(x) for x in pooled] if norm else pooled
    else:
        everything = (keras.layers.Concatenate(axis=1, name="all_tokens")(list(tokens.values()))
                      if len(tokens) > 1 else next(iter(tokens.values())))
        pooled = [TokenPool("gap", name="gap_pool")(norm(everything) if norm else everything)]
    if config.pre_logits_size:
        pre_logits = keras.layers.Dense(config.pre_logits_size, activation="tanh", name="pre_logits")
        pooled = [pre_logits(x) for x in pooled]
    projection = keras.layers.Dense(sum(config.num_classes), name="output_projection")
    logits = [projection(x) for x in pooled]
    logits = keras.layers.Average(name="modality_average")(logits) if len(logits) > 1 else logits[0]
    return keras.layers.Activation("linear", dtype="float32", name=contract.OUTPUT_LOGITS)(logits)


def build_model(config: ModelConfig) -> keras.Model:
    """inputs {'rgb', 'spec'} (those in config.modalities) -> logits [B, sum(num_classes)]."""
    inputs = model_inputs(config)
    tokens = encode(config, embed(config, inputs))[-1]
    return keras.Model(inputs, classify(config, tokens), name=f"mbt_{config.fusion}")


def modality_logits_model(model: keras.Model) -> keras.Model:
    """The model's training forward, as Scenic's MBT computes it with train=True.

    classifier='token' with two modalities: {modality: logits [B, C]}, each modality's CLS
    through the shared classifier; the model's own output (Scenic's train=False) is their
    average, so a loss on it would train a different objective than the authors' mean of
    per-modality losses. Otherwise the model has one output and is returned as it is. Shares
    every weight with `model`.
    """
    try:
        average = model.get_layer("modality_average")
    except ValueError:
        return model
    modalities = [m for m in MODALITIES if m in model.input]
    return keras.Model(model.input, dict(zip(modalities, average.input)),
                       name=f"{model.name}_per_modality")


def build_token_model(config: ModelConfig, *, exchange_bottleneck=True) -> keras.Model:
    """Same encoder, but outputs every layer's tokens {f'{modality}_{layer}': [B, N, d]}.

    For measuring attention flow (which inputs each layer's tokens depend on).
    """
    inputs = model_inputs(config)
    history = encode(config, embed(config, inputs), exchange_bottleneck=exchange_bottleneck)
    outputs = {f"{m}_{layer}": x for layer, tokens in enumerate(history) for m, x in tokens.items()}
    return keras.Model(inputs, outputs, name="mbt_tokens")


def build_attention_model(config: ModelConfig) -> keras.Model:
    """`build_model`'s graph, which also outputs every block's attention probabilities:
    {OUTPUT_LOGITS: logits, block name: [B, heads, N_queries, N_keys]} (block names as in the
    module docstring). Its variables have `build_model(config)`'s paths, so a trained or
    exported model's weights load into it (`attention_rollout.assign_weights`)."""
    inputs = model_inputs(config)
    maps = {}
    tokens = encode(config, embed(config, inputs), maps=maps)[-1]
    return keras.Model(inputs, {contract.OUTPUT_LOGITS: classify(config, tokens), **maps},
                       name=f"mbt_{config.fusion}_attention")
