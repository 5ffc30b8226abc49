"""Do bottlenecks localise attention more than vanilla fusion? (paper 4.4, Figure 6)

On the demo clips (bench/fusion_proof.py's data and recipe), each fusion variant is trained
the same way; then, on the eval clips, Attention Rollout from what the classifier reads
(mbt_keras.attention_rollout) is taken to the RGB patches, summed over the frames, and we
measure the share of that RGB mass inside the flashing disc, the demo's visual object,
against the disc's share of the frame's area (1.0 = no better than uniform). The disc's mask
comes from the model's own input frames: the disc is the only saturated colour on a dark,
noisy background and stays in place (max over frames of max - min channel > DISC_SATURATION).
The audio classes' disc is grey (no mask): only the visual and relation groups are measured.

  python bench/attention_localisation.py --work-dir DIR --clips 144 --epochs 100 \
      --optimizer adamw --learning-rate 0.004 --shuffle [--variants vanilla bottleneck]

Prints a markdown table per class group: disc area, mass inside, their ratio, mean over the
eval clips, and each model's accuracy on the group.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.fusion_proof import GROUPS, add_recipe_arguments, trained_variants  # noqa: E402
from components import attention_maps  # noqa: E402
from mbt_keras import attention_rollout, input_pipeline  # noqa: E402
from mbt_keras.model import build_attention_model  # noqa: E402

# The lit disc's colours saturate (max - min channel) at 0.67-0.78 (dimmed, 30 % of the time:
# 0.2-0.26); the background's noise channels (0-50 of 255) stay below 0.2, blurred edges of
# the disc below 0.45 (measured on demo eval frames).
DISC_SATURATION = 0.45
MEASURED = ("visual", "relation")


def disc_mask(frames: np.ndarray) -> np.ndarray:
    """[S, S] bool: the pixels of the disc in a clip's model frames [F, S, S, 3] in [0, 1]."""
    saturation = frames.max(axis=-1) - frames.min(axis=-1)
    return saturation.max(axis=0) > DISC_SATURATION


def localisation(config, clip) -> tuple:
    """(disc area share, share of the RGB rollout mass inside the disc) of one clip, None
    when no disc is found; a patch counts with the share of its pixels inside the disc."""
    mask = disc_mask(clip.inputs["rgb"])
    if not mask.any():
        return None
    p = config.patch_size
    inside = mask.reshape(mask.shape[0] // p, p, mask.shape[1] // p, p).mean(axis=(1, 3))
    rgb = attention_rollout.rgb_map(config, clip.rollout.output(), clip.rollout.columns)
    return float(mask.mean()), float((rgb * inside).sum() / rgb.sum())


def measure(model, config, eval_files, class_names):
    """{group: [(area, inside) per eval clip]} for the trained `model`."""
    probing = build_attention_model(config)
    attention_rollout.assign_weights(probing, [v.path for v in model.variables],
                                     model.get_weights())
    found = {group: [] for group in MEASURED}
    for inputs, labels in input_pipeline.eval_dataset(eval_files, config, 8, views=1):
        flat = {k: v.numpy()[:, 0] for k, v in inputs.items()}
        for clip, label in zip(attention_maps.explain(probing, config, flat),
                               np.argmax(labels.numpy(), axis=-1)):
            group = next(g for g, names in GROUPS.items() if class_names[label] in names)
            measured = localisation(config, clip)
            if group in found and measured:
                found[group].append(measured)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--variants", nargs="+", default=["vanilla", "bottleneck"])
    args = parser.parse_args(argv)
    rows = [(name, config, accuracy, measure(model, config, eval_files, class_names))
            for name, model, config, accuracy, _, eval_files, class_names
            in trained_variants(args)]
    print("\n| fusion | class group | eval clips | disc area | RGB rollout mass in disc | "
          "ratio (1 = uniform) | group accuracy |")
    print("|---|---|---|---|---|---|---|")
    for name, config, accuracy, found in rows:
        for group, pairs in found.items():
            area, inside = np.array(pairs).T
            print(f"| {name} (Lf={config.fusion_layer}) | {group} | {len(pairs)} | "
                  f"{area.mean():.3f} | {inside.mean():.3f} | {(inside / area).mean():.2f} "
                  f"| {accuracy[group]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
