"""`create_pipeline`: wires the MBT TFX pipeline and nothing else (TFX template style).

clip ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Trainer
-> latest-blessed-model Resolver -> Evaluator -> Pusher.
"""
from typing import Optional

from tfx import v1 as tfx

from components import eval_config
from components.clip_example_gen import ClipExampleGen
from mbt_keras.config import from_preset
from pipeline.settings import PipelineSettings

TRAINER_RUN_FN = "components.trainer_module.run_fn"


def create_pipeline(settings: PipelineSettings,
                    metadata_connection_config: Optional[object] = None) -> tfx.dsl.Pipeline:
    model_config = from_preset(settings.preset, **settings.overrides)

    example_gen = ClipExampleGen(
        labels=settings.labels,
        videos=settings.videos,
        label_format=settings.label_format,
        class_map=settings.class_map,
        missing_audio=settings.missing_audio,
        short_side=settings.short_side,
    )
    if settings.decode_beam_args:
        example_gen = example_gen.with_beam_pipeline_args(list(settings.decode_beam_args))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"])
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])

    trainer = tfx.components.Trainer(
        run_fn=TRAINER_RUN_FN,
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=settings.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=0),
        custom_config=settings.trainer_config(),
    )

    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")

    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config.build_eval_config(
            model_config, min_metric=settings.min_metric,
            max_metric_drop=settings.max_metric_drop),
    )

    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=settings.push_dir)),
    )

    return tfx.dsl.Pipeline(
        pipeline_name=settings.pipeline_name,
        pipeline_root=settings.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, trainer,
                    model_resolver, evaluator, pusher],
        enable_cache=settings.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(settings.beam_args),
    )
