"""Replays a reference run of the authors' Scenic trainer (tests/data/scenic_train_steps) with
the project's importer and the Trainer's own step, and measures how far each step is from it.

`python -m tests.mbt_keras.scenic_steps OUT.json` replays every run, the `_2replicas` ones
under MirroredStrategy over two logical CPU devices (which must be made before TensorFlow
starts, hence a process of its own), in each of the VARIANTS, and writes
{run: {variant: measures}} to OUT.json for tests/mbt_keras/test_scenic_steps.py.
"""
import json
import os
import sys
import tempfile

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                    "scenic_train_steps")
RUNS = sorted(d for d in os.listdir(DATA) if os.path.isdir(os.path.join(DATA, d)))
HEADS = {"multilabel": "multilabel", "singlelabel": "singlelabel", "verb_noun": "verb_noun"}
# (TrainConfig.jit_compile, TrainConfig.steps_per_execution) of each replay: as `mbt train`
# runs by default (one step per call), and as on a TPU: XLA and 3 steps per call (calls of 3,
# 3 and 2 steps; the loop is the same code for any number, XLA per replica the same for any).
VARIANTS = {"graph": (False, 1), "xla_3_per_call": (True, 3)}
# The reference model's inputs (README there): rgb in [-1, 1] as given, spectrogram channel 0
# unnormalised, no dropout or stochastic depth.
INPUTS = dict(num_frames=4, image_size=32, spec_frames=64, mel_bins=32, rgb_scale="unit",
              spec_mean=0.0, spec_std=1.0, drop_path=0.0, dropout=0.0, attention_dropout=0.0)


def read_run(run: str):
    """(settings, per-step trace, batches) of one reference run."""
    with open(os.path.join(DATA, run, "trace.json")) as f:
        trace = json.load(f)
    return trace["settings"], trace["trace"], dict(np.load(os.path.join(DATA, run, "batches.npz")))


def model_config(settings: dict, params: dict):
    """The importer's config for the run's checkpoint, with the run's head and fusion layer."""
    from mbt_keras.checkpoints import scenic_import
    classes = tuple(settings["splits"]) if settings["head"] == "verb_noun" else (settings["classes"],)
    return scenic_import.checkpoint_config(params, fusion_layer=settings["fusion_layer"],
                                           head=HEADS[settings["head"]], num_classes=classes,
                                           **INPUTS)


def train_config(settings: dict, jit_compile: bool, steps_per_execution: int = 1):
    """The run's settings as a TrainConfig (Scenic's base_learning_rate is the peak; ours is
    the peak at batch 64)."""
    from mbt_keras import schedule, training
    steps, batch = settings["steps"], settings["batch"]
    return training.TrainConfig(
        epochs=1, steps_per_epoch=steps, batch_size=batch,
        base_learning_rate=settings["base_lr"] * schedule.REFERENCE_BATCH / batch,
        warmup_epochs=settings["warmup_steps"] / steps, momentum=settings["momentum"],
        label_smoothing=settings["label_smoothing"] or 0.0,
        clip_norm=settings["max_grad_norm"] or 0.0, mixup_alpha=settings.get("mixup", 0.0),
        modality_mixup=settings.get("mixmod", False), augment=False, seed=0,
        jit_compile=jit_compile, steps_per_execution=steps_per_execution)


def step_batches(settings, trace, batches, replicas: int):
    """Per-replica batches in the order distribute_datasets_from_function hands them out
    (step 0 replica 0, step 0 replica 1, ...): replica r takes the r-th slice of the step's
    batch, as Scenic shards a batch over devices. A mixup run's recorded weights are the plan."""
    import tensorflow as tf
    from mbt_keras import augment
    share = settings["batch"] // replicas
    elements = []
    for step in range(settings["steps"]):
        for r in range(replicas):
            part = slice(r * share, (r + 1) * share)
            inputs = {"rgb": batches[f"rgb_{step}"][part],
                      "spec": batches[f"spectrogram_{step}"][part, ..., 0]}
            element = (inputs, batches[f"label_{step}"][part].astype(np.float32))
            weights = trace[step].get("mixup_weights")
            if weights:
                key = augment.mixup_key(settings.get("mixmod", False))
                element += ({key: np.array([weights["rgb"], weights["spectrogram"]],
                                           np.float32)},)
            elements.append(element)
    structure = tf.nest.map_structure(tf.constant, elements[0])

    def generate():
        yield from elements
    signature = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), structure)
    return lambda _context: tf.data.Dataset.from_generator(generate, output_signature=signature)


def relative(ours, theirs) -> float:
    """|ours - theirs| over the largest magnitude of theirs (one number per array)."""
    theirs = np.asarray(theirs, np.float64)
    return float(np.max(np.abs(np.asarray(ours, np.float64) - theirs)) /
                 max(np.max(np.abs(theirs)), 1e-30))


def replay(run: str, jit_compile: bool = False, steps_per_execution: int = 1) -> dict:
    """Imports checkpoint_0, runs the run's steps with Trainer.train_steps, in calls of
    steps_per_execution steps, and measures the losses, learning rates, final weights and
    evaluation logits against Scenic's."""
    import tensorflow as tf
    from mbt_keras import training
    from mbt_keras.checkpoints import flax_msgpack, scenic_import
    from mbt_keras.checkpoints.scenic_names import model_weights

    settings, trace, batches = read_run(run)
    params = scenic_import.scenic_layout(
        flax_msgpack.read_params(os.path.join(DATA, run, "checkpoint_0"))[0])
    config = model_config(settings, params)
    replicas = settings.get("devices", 1)
    strategy = (tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
                if replicas > 1 else tf.distribute.get_strategy())
    with tempfile.TemporaryDirectory() as model_dir:
        trainer = training.Trainer(
            config, train_config(settings, jit_compile, steps_per_execution), model_dir,
            settings["steps"], strategy,
            init_fn=lambda model: scenic_import.load_params(model, params))
        iterator = iter(strategy.distribute_datasets_from_function(
            step_batches(settings, trace, batches, replicas)))
        losses, rates = [], []
        for first in range(0, settings["steps"], steps_per_execution):
            result = trainer.train_steps(
                iterator, min(steps_per_execution, settings["steps"] - first))
            losses.extend(result["loss"].numpy().tolist())
            rates.extend(result["learning_rate"].numpy().tolist())
        final = scenic_import.scenic_layout(
            flax_msgpack.read_params(os.path.join(DATA, run, "final", "checkpoint_0"))[0])
        weights = {name: relative(variable.numpy(), final[name])
                   for name, variable in model_weights(trainer.model).items()}
        logits = trainer.model({"rgb": batches["rgb_0"], "spec": batches["spectrogram_0"][..., 0]},
                               training=False)
    return {"loss": losses, "scenic_loss": [t["loss"] for t in trace],
            "lr": rates, "scenic_lr": [t["lr"] for t in trace],
            "weights": weights,
            "eval_logits": relative(logits.numpy(), batches["eval_logits_after"]),
            "moved": max(relative(final[n], params[n]) for n in weights)}


def main(out: str) -> int:
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    results = {run: {variant: replay(run, jit, per_call)
                     for variant, (jit, per_call) in VARIANTS.items()} for run in RUNS}
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
