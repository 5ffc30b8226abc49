"""`mbt train`: train outside TFX from TFRecord globs, with the same library calls as
the TFX Trainer's run_fn (checkpoints and TensorBoard logs under --model-dir; a
rerun with the same --model-dir resumes from the last checkpoint, mid-epoch included). Every
path may be local or a tf.io.gfile URI (gs://). An epoch is --steps-per-epoch steps, else one
pass over the examples that `mbt preprocess` counted for the split --data names; the export's
class names come from its class_map.csv (else from the records' label names, a pass over them)."""
import argparse
import dataclasses
import json
import os

from mbt_keras.user_error import existing_file, output_folder


def add_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--data", required=True, nargs="+", help="training TFRecord glob(s)")
    parser.add_argument("--eval-data", nargs="+", help="evaluation TFRecord glob(s)")
    parser.add_argument("--preset", default="mbt-tiny", help="ModelConfig preset")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="ModelConfig override (JSON value or plain string); repeatable")
    parser.add_argument("--train-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="TrainConfig override, e.g. label_smoothing=0.3; repeatable")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--learning-rate", type=float, default=0.5,
                        help="base learning rate at batch 64 (scaled by batch/64)")
    parser.add_argument("--steps-per-epoch", type=int, default=0,
                        help="default: examples / batch size, the examples as mbt preprocess "
                        "counted them (--data: every file of its Split-<name>/ folder)")
    parser.add_argument("--steps-per-execution", type=int,
                        help="training steps per call on the accelerator (default 1)")
    parser.add_argument("--save-interval-steps", type=int,
                        help="checkpoint every N steps as well as each epoch")
    parser.add_argument("--save-interval-minutes", type=float,
                        help="checkpoint at least every M minutes (default 30; 0: off)")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--export-dir", help="write the SavedModel here after training")
    parser.add_argument("--init-checkpoint", help="ViT checkpoint to initialise from")
    parser.add_argument("--tpu", help="TPU name or address")
    parser.add_argument("--quiet", action="store_true")


def run(args) -> int:
    import tensorflow as tf

    from components.preprocess.transform import split_examples
    from mbt_keras import input_pipeline, strategy as strategies, training
    from mbt_keras.checkpoints import vit_npz
    from mbt_keras.config import from_preset, parse_assignments

    # Everything the user gave is checked before a model is built.
    config = from_preset(args.preset, **parse_assignments(args.set))
    given = {"steps_per_execution": args.steps_per_execution,
             "save_interval_steps": args.save_interval_steps,
             "save_interval_minutes": args.save_interval_minutes}
    train_config = training.TrainConfig.from_dict({
        "epochs": args.epochs, "batch_size": args.batch_size,
        "base_learning_rate": args.learning_rate, "steps_per_epoch": args.steps_per_epoch,
        **{k: v for k, v in given.items() if v is not None}, **parse_assignments(args.train_set)})
    output_folder(args.model_dir, "--model-dir")
    if args.export_dir:
        output_folder(args.export_dir, "--export-dir")
    for patterns in filter(None, (args.data, args.eval_data)):
        input_pipeline.check_records(patterns)
    if args.init_checkpoint:
        vit_npz.check_npz(existing_file(args.init_checkpoint, "--init-checkpoint"), config)
    num_examples = split_examples(args.data)
    training.epoch_steps(train_config, num_examples)  # refused here without a length
    strategy = strategies.make_strategy(args.tpu)
    init_fn = vit_npz.vit_init_fn(config, args.init_checkpoint) if args.init_checkpoint else None
    model, history = training.train(config, train_config, args.model_dir, args.data,
                                    num_examples=num_examples, eval_data=args.eval_data,
                                    strategy=strategy, init_fn=init_fn, verbose=not args.quiet)
    with tf.io.gfile.GFile(os.path.join(args.model_dir, "config.json"), "w") as f:
        f.write(json.dumps({"model": config.to_dict(), "train": dataclasses.asdict(train_config),
                            "history": history}, indent=1))
    if args.export_dir and strategies.is_chief(strategy):
        from mbt_keras.export import export_saved_model
        names = _class_names(args.data, config.num_classes)
        export_saved_model(model, config, names, args.export_dir,
                           eval_views=train_config.eval_views)
    return 0


def _class_names(data, num_classes) -> list:
    """Names from the class map `mbt preprocess` wrote beside the split, else from the records'
    label names (a pass over every record); `num_classes` is the config's count per head."""
    from components.preprocess import label_files
    from components.preprocess.transform import split_class_map
    from mbt_keras import input_pipeline
    class_map = split_class_map(data)
    if class_map:
        return label_files.class_names(label_files.read_class_map(class_map), sum(num_classes))
    return input_pipeline.class_names(data, num_classes)
