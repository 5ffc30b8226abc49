"""TFX Trainer module: `run_fn` builds data and model from mbt_keras and trains them
with the paper's recipe (section 4.2), then exports the serving + TFMA SavedModel.

custom_config keys (all optional): preset, overrides (ModelConfig fields), epochs,
batch_size, learning_rate (base LR at batch 64), steps_per_epoch, train (other
TrainConfig fields), tpu, init_checkpoint (ViT weights), class_map (a class map file,
a list of names or {index: name}), noun_class_map (with a class map file of verbs: the
nouns' file, Epic-Kitchens), encoding (the class map files', default utf-8),
checkpoint_dir (a stable directory so a retried run resumes). Without steps_per_epoch an
epoch is one pass over the train split's examples as ClipExampleGen counted them.
"""
import os

from components.preprocess import label_files
from components.preprocess.transform import split_examples
from mbt_keras.checkpoints import vit_npz
from mbt_keras import input_pipeline, strategy as strategies, training
from mbt_keras.config import from_preset
from mbt_keras.export import export_saved_model


def _class_names(custom_config: dict, train_files, config):
    """Names from class_map, else from the examples' label strings."""
    class_map = custom_config.get("class_map")
    size = sum(config.num_classes)
    if isinstance(class_map, str):  # a class map file (local or gs://), as the pipeline passes
        return label_files.class_names(_read_class_map(custom_config), size)
    if isinstance(class_map, dict):
        return [class_map.get(str(i), class_map.get(i, f"class_{i}")) for i in range(size)]
    if class_map:
        return list(class_map)
    return input_pipeline.class_names(train_files, config.num_classes)


def _read_class_map(custom_config: dict):
    return label_files.read_class_maps(custom_config["class_map"],
                                       custom_config.get("noun_class_map"),
                                       custom_config.get("encoding", "utf-8"))


def train_config_of(custom: dict) -> training.TrainConfig:
    """The TrainConfig a custom_config asks for; `mbt pipeline run`/`compile` build it too,
    so a bad value is refused before TFX starts rather than in the Trainer."""
    return training.TrainConfig.from_dict({
        "epochs": int(custom.get("epochs", 1)), "batch_size": int(custom.get("batch_size", 64)),
        "base_learning_rate": float(custom.get("learning_rate", 0.5)),
        "steps_per_epoch": int(custom.get("steps_per_epoch", 0)), **custom.get("train", {})})


def run_fn(fn_args):
    """Entry point the TFX Trainer calls (GenericExecutor)."""
    custom = dict(fn_args.custom_config or {})
    overrides = dict(custom.get("overrides", {}))
    if "num_classes" not in overrides and custom.get("class_map"):
        class_map = custom["class_map"]
        overrides["num_classes"] = (label_files.num_classes(_read_class_map(custom))
                                    if isinstance(class_map, str) else len(class_map))
    config = from_preset(custom.get("preset", "mbt-tiny"), **overrides)
    train_config = train_config_of(custom)
    strategy = strategies.make_strategy(custom.get("tpu"))
    pretrained = custom.get("init_checkpoint")
    init_fn = vit_npz.vit_init_fn(config, pretrained) if pretrained else None
    model_dir = custom.get("checkpoint_dir") or fn_args.model_run_dir
    train_files = list(fn_args.train_files)
    model, _ = training.train(config, train_config, model_dir, train_files,
                              num_examples=split_examples(train_files),
                              eval_data=list(fn_args.eval_files) or None, strategy=strategy,
                              init_fn=init_fn, log_dir=fn_args.model_run_dir)
    names = _class_names(custom, fn_args.train_files, config)
    export_dir = fn_args.serving_model_dir if strategies.is_chief(strategy) else os.path.join(
        fn_args.model_run_dir, f"export_{strategies.task_id(strategy)}")
    export_saved_model(model, config, names, export_dir, eval_views=train_config.eval_views)
