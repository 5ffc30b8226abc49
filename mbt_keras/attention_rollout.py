"""Attention Rollout (Abnar & Zuidema 2020, the paper's [1]) through MBT's token graph (4.4, Fig. 6).

Per block, the heads' attention probabilities are averaged, the residual is added as
0.5 A + 0.5 I and rows are renormalised; these matrices are multiplied over the layers along
the paths the model wires (`mbt_keras.fusion`):
- below Lf (and everywhere in late fusion) each modality within itself;
- vanilla fusion: over [z_rgb || z_spec]; cross fusion: each modality's queries over all
  tokens, its residual on its own tokens;
- bottleneck fusion: each modality over [z_m || z_fsn], the bottleneck rows after a layer
  combined as the model combines them (`sequential`: the spectrogram stream starts from the
  RGB stream's result and its result goes on; `mean`: the modalities' results averaged).
A rollout row says how much of a token's value flows from each input token; the columns
are the RGB tokens, then the spectrogram tokens, then the B learned bottleneck tokens
(the model's own input where bottleneck fusion starts). Every row sums to 1.
"""
import dataclasses
from typing import Dict, List

import numpy as np
import tensorflow as tf

from mbt_keras import contract
from mbt_keras.config import MODALITIES, ModelConfig
from mbt_keras.input_contract import InputContract
from mbt_keras.model import SUFFIX, build_attention_model, build_model
from mbt_keras.user_error import UserError

BOTTLENECK = "fsn"


def block_name(layer: int, modality: str = "rgb") -> str:
    return f"encoderblock_{layer}{SUFFIX[modality]}"


def residual_attention(probabilities: np.ndarray, offset: int = 0) -> np.ndarray:
    """0.5 mean-over-heads(A) + 0.5 I, rows renormalised; `probabilities` [heads, Nq, Nk].

    The queries are keys offset..offset+Nq (cross fusion: a modality inside all tokens).
    """
    mean = np.asarray(probabilities, np.float64).mean(axis=0)
    identity = np.eye(mean.shape[0], mean.shape[1], k=offset)
    joint = 0.5 * mean + 0.5 * identity
    return joint / joint.sum(axis=-1, keepdims=True)


@dataclasses.dataclass
class Rollout:
    """One clip's rollout: `rows` {stream: [N_stream, columns]} for the output tokens of each
    modality (and the bottleneck's, when fused by bottlenecks); `columns` {stream: slice}."""
    rows: Dict[str, np.ndarray]
    columns: Dict[str, slice]
    classifier: str

    def output(self) -> np.ndarray:
        """Rollout of what the classifier reads (3.4): the mean of the modalities' CLS rows
        (the model averages their logits), or for 'gap' the mean of all output tokens."""
        streams = [m for m in MODALITIES if m in self.rows]
        if self.classifier == "token":
            return np.mean([self.rows[m][0] for m in streams], axis=0)
        return np.concatenate([self.rows[m] for m in streams]).mean(axis=0)


def token_counts(config: ModelConfig) -> Dict[str, int]:
    """Tokens per modality, CLS included (`PatchEmbedding`, `ClassToken`)."""
    p, cls = config.patch_size, int(config.classifier == "token")
    frames = config.num_frames // (config.tubelet_frames if config.rgb_tokenizer == "tubelet"
                                   else 1)
    counts = {"rgb": frames * (config.image_size // p) ** 2 + cls,
              "spec": (config.spec_frames // p) * (config.mel_bins // p) + cls}
    return {m: counts[m] for m in MODALITIES if m in config.modalities}


def rollout(config: ModelConfig, maps: Dict[str, np.ndarray], layers: int = None) -> Rollout:
    """The rollout of one clip from its blocks' attention probabilities
    ({block name: [heads, Nq, Nk]}, as `build_attention_model` outputs them for one clip),
    through the first `layers` layers (all by default)."""
    sizes = token_counts(config)
    modalities = list(sizes)
    bottleneck = config.fused and config.fusion == "bottleneck"
    names = modalities + ([BOTTLENECK] if bottleneck else [])
    starts = np.cumsum([0] + [sizes[m] if m != BOTTLENECK else config.num_bottlenecks
                              for m in names])
    columns = {m: slice(int(a), int(b)) for m, a, b in zip(names, starts[:-1], starts[1:])}
    eye = np.eye(int(starts[-1]))
    rows = {m: eye[columns[m]] for m in modalities}
    fsn = None
    for layer in range(config.num_layers if layers is None else layers):
        if not config.fused or layer < config.fusion_layer:
            rows = {m: residual_attention(maps[block_name(layer, m)]) @ rows[m] for m in rows}
        elif config.fusion == "vanilla":
            joint = residual_attention(maps[block_name(layer)]) @ _stack(rows, modalities)
            rows = _unstack(joint, modalities, sizes)
        elif config.fusion == "cross":
            everything, offsets = _stack(rows, modalities), _offsets(modalities, sizes)
            rows = {m: residual_attention(maps[block_name(layer, m)], offsets[m]) @ everything
                    for m in modalities}
        else:
            if fsn is None:
                fsn = {m: eye[columns[BOTTLENECK]] for m in modalities}
            rows, fsn = _bottleneck_layer(config, maps, layer, rows, fsn)
    if fsn is not None:
        rows[BOTTLENECK] = next(iter(fsn.values()))
    return Rollout(rows, columns, config.classifier)


def _offsets(modalities, sizes) -> Dict[str, int]:
    starts = np.cumsum([0] + [sizes[m] for m in modalities])
    return dict(zip(modalities, (int(s) for s in starts)))


def _stack(rows, modalities) -> np.ndarray:
    return np.concatenate([rows[m] for m in modalities])


def _unstack(joint, modalities, sizes) -> Dict[str, np.ndarray]:
    offsets = _offsets(modalities, sizes)
    return {m: joint[offsets[m]:offsets[m] + sizes[m]] for m in modalities}


def _bottleneck_layer(config, maps, layer, rows, fsn):
    """Eq. 8-9 on rollout rows, as `fusion.bottleneck_layer` wires the tokens."""
    out_rows, out_fsn, previous = {}, {}, None
    sequential = config.bottleneck_update == "sequential"
    for m, own in rows.items():
        start = previous if (sequential and previous is not None) else fsn[m]
        joint = residual_attention(maps[block_name(layer, m)]) @ np.concatenate([own, start])
        out_rows[m], out_fsn[m] = joint[:len(own)], joint[len(own):]
        previous = out_fsn[m]
    shared = previous if sequential else np.mean(list(out_fsn.values()), axis=0)
    return out_rows, {m: shared for m in out_fsn}


# --- from a rollout row to pictures of the inputs -----------------------------------------

def rgb_map(config: ModelConfig, row: np.ndarray, columns: Dict[str, slice]) -> np.ndarray:
    """[H/p, W/p]: a row's mass on the RGB patches, summed over frames (Fig. 6); tokens are
    ordered frame (or tubelet), row, column after the CLS (`PatchEmbedding`)."""
    side = config.image_size // config.patch_size
    patches = row[columns["rgb"]][1 if config.classifier == "token" else 0:]
    return patches.reshape(-1, side, side).sum(axis=0)


def spec_map(config: ModelConfig, row: np.ndarray, columns: Dict[str, slice]) -> np.ndarray:
    """[T/p, mel/p]: a row's mass on the spectrogram's time-frequency patches."""
    patches = row[columns["spec"]][1 if config.classifier == "token" else 0:]
    return patches.reshape(config.spec_frames // config.patch_size,
                           config.mel_bins // config.patch_size)


def per_clip(config: ModelConfig, outputs: Dict[str, np.ndarray]) -> List[Rollout]:
    """One Rollout per clip of a batch of `build_attention_model` outputs."""
    batch = len(outputs[contract.OUTPUT_LOGITS])
    maps = {k: np.asarray(v) for k, v in outputs.items() if k != contract.OUTPUT_LOGITS}
    return [rollout(config, {k: v[i] for k, v in maps.items()}) for i in range(batch)]


# --- an exported model's attention ---------------------------------------------------------

def exported_attention_model(saved_model_dir: str):
    """(`build_attention_model` with an exported SavedModel's weights, its ModelConfig, its
    InputContract). The config comes from the model's input contract; the weights are the
    variables the export tracked, in the model's own order (`export._ExportModule`)."""
    path = f"{saved_model_dir.rstrip('/')}/assets/{contract.CONTRACT_ASSET}"
    if not tf.io.gfile.exists(path):
        raise UserError(f"{saved_model_dir} is not an exported MBT model (no {path}): pass a "
                        "pushed version or a Trainer's model (its Format-Serving folder)")
    with tf.io.gfile.GFile(path) as f:
        model_contract = InputContract.from_json(f.read())
    if model_contract.model_config is None:
        raise UserError(f"{saved_model_dir}: its input contract has no model_config (exported "
                        "before attention maps were supported); export it again")
    config = ModelConfig.from_dict(model_contract.model_config)
    model = build_attention_model(config)
    exported = tf.saved_model.load(saved_model_dir).model_variables
    trained = build_model(config).variables  # the order the export tracked them in
    if [tuple(v.shape) for v in trained] != [tuple(v.shape) for v in exported]:
        raise UserError(f"{saved_model_dir}: its variables do not fit the model its contract "
                        f"describes ({len(exported)} exported, {len(trained)} expected)")
    assign_weights(model, [v.path for v in trained], exported)
    return model, config, model_contract


def assign_weights(model, paths, values) -> None:
    """Gives each of `model`'s variables the value of the same path (layer names are the
    model's own, so an attention model takes a trained model's weights whatever the order)."""
    by_path = dict(zip(paths, values))
    missing = [v.path for v in model.variables if v.path not in by_path]
    if missing or len(by_path) != len(model.variables):
        raise ValueError(f"weights do not match the model: missing {missing[:3]}, "
                         f"{len(by_path)} given for {len(model.variables)} variables")
    for variable in model.variables:
        variable.assign(by_path[variable.path])
