"""`create_pipeline`: wires the MBT TFX pipeline and nothing else (TFX template style).

clip ExampleGen -> StatisticsGen -> SchemaGen -> SchemaCurator -> ExampleValidator -> Trainer
-> latest-blessed-model Resolver -> Evaluator -> Pusher.
"""
from typing import Optional

from tfx import v1 as tfx

from components import eval_config
from components.clip_example_gen import ClipExampleGen
from components.schema_curator import SchemaCurator
from mbt_keras import contract
from mbt_keras.config import from_preset
from mbt_keras.windows import stored_fps
from pipeline.settings import PipelineSettings, with_worker_image

TRAINER_RUN_FN = "components.trainer_module.run_fn"


def vertex_training_config(settings: PipelineSettings) -> dict:
    """The Trainer's custom_config keys that make TFX's Vertex Trainer extension run it as a
    Vertex AI custom job (CustomJob.job_spec) on `settings.trainer_machine` and the pipeline
    image; empty when the Trainer runs inside its pipeline step."""
    if not settings.trainer_machine:
        return {}
    vertex = tfx.extensions.google_cloud_ai_platform
    return {
        vertex.ENABLE_VERTEX_KEY: True,
        vertex.VERTEX_REGION_KEY: settings.vertex_region,
        vertex.TRAINING_ARGS_KEY: {
            "project": settings.vertex_project,
            "job_spec": {"worker_pool_specs": [{
                "machine_spec": settings.trainer_machine.machine_spec(),
                "replica_count": 1,
                "container_spec": {"image_uri": settings.image},
            }]},
        },
    }


def create_pipeline(settings: PipelineSettings,
                    metadata_connection_config: Optional[object] = None) -> tfx.dsl.Pipeline:
    model_config = from_preset(settings.preset, **settings.overrides)

    # Every data flag of `mbt preprocess` (pipeline_cli.DATA_DESTS), with its meaning there.
    example_gen = ClipExampleGen(
        labels=settings.labels,
        videos=settings.videos,
        label_format=settings.label_format,
        class_map=settings.class_map,
        noun_class_map=settings.noun_class_map,
        encoding=settings.encoding,
        video_template=settings.video_template,
        presegmented=settings.presegmented,
        splits=settings.splits,
        missing_audio=settings.missing_audio,
        min_duration=settings.min_duration,
        max_damaged_fraction=settings.max_damaged_fraction,
        segment_seconds=settings.segment_seconds,
        short_side=settings.short_side,
        include_waveform=settings.include_waveform,
        compression=settings.compression,
        decoder_threads=settings.decoder_threads,
        fps=settings.fps or stored_fps(model_config.num_frames, model_config.spec_frames
                                       / contract.SPEC_FRAMES_PER_SECOND),
    )
    if settings.decode_beam_args:
        example_gen = example_gen.with_beam_pipeline_args(
            list(with_worker_image(settings.decode_beam_args, settings.image)))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"])
    schema_curator = SchemaCurator(inferred_schema=schema_gen.outputs["schema"],
                                   class_map=settings.class_map or "",
                                   noun_class_map=settings.noun_class_map or "",
                                   encoding=settings.encoding)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_curator.outputs["schema"])

    trainer_class = (tfx.extensions.google_cloud_ai_platform.Trainer
                     if settings.trainer_machine else tfx.components.Trainer)
    trainer = trainer_class(
        run_fn=TRAINER_RUN_FN,
        examples=example_gen.outputs["examples"],
        schema=schema_curator.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=settings.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=0),
        custom_config={**settings.trainer_config(), **vertex_training_config(settings)},
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
            max_metric_drop=settings.max_metric_drop,
            pr_curve_classes=settings.pr_curve_classes),
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
        components=[example_gen, statistics_gen, schema_gen, schema_curator, example_validator,
                    trainer, model_resolver, evaluator, pusher],
        enable_cache=settings.enable_cache,
        metadata_connection_config=metadata_connection_config,
        # Beam steps that run on Dataflow get the pipeline image as their workers' image.
        beam_pipeline_args=list(with_worker_image(settings.beam_args, settings.image)),
    )
