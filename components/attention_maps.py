"""Attention maps of an exported model as pictures (paper 4.4 and Figure 6).

For each clip: the Attention Rollout (`mbt_keras.attention_rollout`) from what the classifier
reads to the RGB patches, summed over the frames and laid over the middle frame, and to the
spectrogram's time-frequency patches, laid over the log-mel. `mbt explain` writes them as
PNGs; `mbt report` puts them for a few evaluation clips per class into TensorBoard.
"""
import dataclasses
from typing import Dict, List, Sequence

import numpy as np

from components import figures
from mbt_keras import attention_rollout, contract
from mbt_keras.config import ModelConfig


@dataclasses.dataclass
class ExplainedClip:
    """One clip's model inputs, its rollout and its scores."""
    inputs: Dict[str, np.ndarray]     # 'rgb' [F, S, S, 3] in [0, 1], 'spec' [T, mel]
    rollout: attention_rollout.Rollout
    logits: np.ndarray

    def shares(self) -> Dict[str, float]:
        """Share of the output's rollout mass on each input stream (they sum to 1)."""
        row = self.rollout.output()
        return {name: float(row[columns].sum()) for name, columns in self.rollout.columns.items()}


def explain(model, config: ModelConfig, inputs: Dict[str, np.ndarray]) -> List[ExplainedClip]:
    """Runs `model` (`build_attention_model`'s) on a batch of model inputs, one ExplainedClip
    per clip."""
    outputs = {k: np.asarray(v) for k, v in model(inputs, training=False).items()}
    rollouts = attention_rollout.per_clip(config, outputs)
    return [ExplainedClip({m: np.asarray(x[i]) for m, x in inputs.items()}, r,
                          outputs[contract.OUTPUT_LOGITS][i]) for i, r in enumerate(rollouts)]


def _upsampled(values: np.ndarray, factor: int) -> np.ndarray:
    """Each patch's value over its factor x factor pixels, scaled to [0, 1] for display."""
    peak = values.max()
    return np.kron(values / peak if peak > 0 else values, np.ones((factor, factor)))


def figure_png(config: ModelConfig, clip: ExplainedClip, title: str) -> bytes:
    """PNG: the RGB rollout over the middle frame, and the spectrogram rollout over the
    log-mel (time across, mel bins up), each modality the model has."""
    plt = figures.pyplot()
    row, columns = clip.rollout.output(), clip.rollout.columns
    shares = clip.shares()
    panels = [m for m in ("rgb", "spec") if m in clip.inputs]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), dpi=100,
                                squeeze=False)
    for ax, modality in zip(axes[0], panels):
        if modality == "rgb":
            frames = clip.inputs["rgb"]
            ax.imshow(np.clip(frames[len(frames) // 2], 0.0, 1.0))
            heat = _upsampled(attention_rollout.rgb_map(config, row, columns), config.patch_size)
            ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
            ax.set_title(f"RGB, summed over {config.num_frames} frames "
                         f"({shares['rgb']:.0%} of the mass)", fontsize=8)
        else:
            spec = clip.inputs["spec"].T
            ax.imshow(spec, origin="lower", aspect="auto", cmap="gray")
            heat = _upsampled(attention_rollout.spec_map(config, row, columns).T,
                              config.patch_size)
            ax.imshow(heat, origin="lower", aspect="auto", cmap="jet", alpha=0.45,
                      vmin=0.0, vmax=1.0, extent=(-0.5, spec.shape[1] - 0.5, -0.5,
                                                  spec.shape[0] - 0.5))
            ax.set_xlabel("spectrogram frame (10 ms)", fontsize=7)
            ax.set_ylabel("mel bin", fontsize=7)
            ax.set_title(f"spectrogram ({shares['spec']:.0%} of the mass)", fontsize=8)
        ax.tick_params(labelsize=6)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figures.png_bytes(figure)


def clip_title(clip: ExplainedClip, class_names: Sequence[str], label: str = None) -> str:
    """'predicted NAME', the true label when known, and the bottleneck tokens' share."""
    best = int(np.argmax(clip.logits))
    name = class_names[best] if best < len(class_names) else f"class {best}"
    parts = [f"predicted {name}"] + ([f"true {label}"] if label else [])
    if attention_rollout.BOTTLENECK in clip.rollout.columns:
        parts.append(f"{clip.shares()[attention_rollout.BOTTLENECK]:.0%} on bottleneck tokens")
    return ", ".join(parts)


# --- TensorBoard: a few evaluation clips per class -----------------------------------------

TAG_PREFIX = "attention"
MAX_CLASSES = 30  # a 527-class run gets maps for its first classes, not 1000 images


def clips_per_class(patterns, config: ModelConfig, per_class: int) -> Dict[int, List[bytes]]:
    """{class id: up to `per_class` serialized eval clips labelled with it}, in file order,
    for the first MAX_CLASSES classes."""
    import tensorflow as tf

    from mbt_keras import input_pipeline
    wanted = min(sum(config.num_classes), MAX_CLASSES)
    chosen: Dict[int, List[bytes]] = {}
    files = tf.data.Dataset.from_tensor_slices(input_pipeline.list_files(patterns))
    for serialized in files.flat_map(input_pipeline.read_tfrecords):
        context, _ = tf.io.parse_single_sequence_example(
            serialized, context_features={contract.LABEL_INDEX: tf.io.VarLenFeature(tf.int64)})
        for label in context[contract.LABEL_INDEX].values.numpy():
            if label < wanted and len(chosen.setdefault(int(label), [])) < per_class:
                chosen[int(label)].append(serialized.numpy())
        if len(chosen) == wanted and all(len(c) == per_class for c in chosen.values()):
            break
    return dict(sorted(chosen.items()))


def write_summaries(saved_model: str, eval_files, log_dir: str, class_names: Sequence[str],
                    per_class: int, step: int = 0) -> int:
    """Attention maps of `per_class` eval clips of each class as TensorBoard images under
    `<log_dir>/evaluation`, tag attention/<class id>_<name>, inputs as the Evaluator's
    examples signature takes them (one centred view); returns the number of clips drawn."""
    import tensorflow as tf

    from components.eval_report import SUMMARY_SUBDIR, tag_part
    from mbt_keras import input_pipeline
    model, config, _ = attention_rollout.exported_attention_model(saved_model)
    drawn = 0
    writer = tf.summary.create_file_writer(f"{log_dir}/{SUMMARY_SUBDIR}")
    with writer.as_default(step=step):
        for class_id, records in clips_per_class(eval_files, config, per_class).items():
            inputs = [input_pipeline.eval_example(tf.constant(r), config, 1)[0] for r in records]
            batch = {m: np.concatenate([x[m].numpy() for x in inputs]) for m in inputs[0]}
            name = class_names[class_id] if class_id < len(class_names) else f"class {class_id}"
            images = [figures.rgb_array(figure_png(config, clip, clip_title(clip, class_names,
                                                                            name)))
                      for clip in explain(model, config, batch)]
            tf.summary.image(f"{TAG_PREFIX}/{class_id:03d}_{tag_part(name)}", np.stack(images),
                             max_outputs=per_class,
                             description=f"Attention Rollout of eval clips of {name} (paper "
                             "Fig. 6): RGB patches summed over frames on the middle frame, "
                             "spectrogram patches on the log-mel")
            drawn += len(images)
    writer.close()
    return drawn
