"""Everything a user changes about a pipeline run, as one dataclass (configuration as data).

`mbt pipeline run` flags, the demo and the Kubeflow/Vertex compiler all build one of these;
`create_pipeline` reads nothing else. The cloud settings (Dataflow worker image and options,
the Trainer's Vertex machine) live here too, once, for every job that can run on Dataflow
(`mbt pipeline compile`, `mbt preprocess`, batch inference).
"""
import dataclasses
import os
from typing import Dict, Iterable, Optional, Tuple

from components.preprocess.segments import DEFAULT_SEGMENT_SECONDS
from components.preprocess.splits import DEFAULT_SPLITS
from mbt_keras.user_error import UserError, is_local

# Local runs name the FnApiRunner, the engine the DirectRunner runs pipelines on: Beam 2.74's
# DirectRunner first tries the Prism runner, which downloads its binary from GitHub at run
# time (and here, offline, fails and falls back after ~0.5 s per pipeline).
LOCAL_RUNNER = "--runner=FnApiRunner"
# In-memory Beam keeps the small stock components fast; the clip ExampleGen, which decodes
# video, gets its own args (with_beam_pipeline_args).
LOCAL_BEAM_ARGS = (LOCAL_RUNNER, "--direct_running_mode=in_memory", "--direct_num_workers=1")
# The ClipExampleGen decodes one clip per core on worker threads of the same process: its hot
# path releases the GIL, and worker processes would cost 12-30 s of start-up here
# (docs/benchmarks.md).
LOCAL_DECODE_BEAM_ARGS = (LOCAL_RUNNER, "--direct_running_mode=multi_threading",
                          f"--direct_num_workers={os.cpu_count() or 1}")

# Dataflow workers run the pipeline image (kubeflow/Dockerfile: the TFX image, this package,
# PyAV, simplejpeg, isal, and the Beam boot entrypoint of the same Beam version): without it
# they would run the stock Beam SDK image and fail on the first clip (docs/cloud.md).
DATAFLOW_RUNNER = "DataflowRunner"
# Custom containers need Runner v2; `container` uses the image's Beam instead of staging an
# SDK tarball to install at worker start; the code is imported from the image's package, so
# nothing of the launching process's __main__ is pickled.
DATAFLOW_WORKER_DEFAULTS = ("--experiments=use_runner_v2", "--sdk_location=container",
                            "--no_save_main_session")


def _option_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def runner_of(beam_args: Iterable[str]) -> Optional[str]:
    """The runner named by `--runner=X` (the last one wins, as in Beam), else None."""
    runners = [a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")]
    return runners[-1] if runners else None


def with_worker_image(beam_args: Iterable[str], image: Optional[str]) -> Tuple[str, ...]:
    """`beam_args` plus, when they run on Dataflow, the worker image and DATAFLOW_WORKER_DEFAULTS
    that they do not set themselves. Other runners' args come back unchanged."""
    beam_args = tuple(beam_args)
    runner = (runner_of(beam_args) or "").lower()
    if runner not in (DATAFLOW_RUNNER.lower(), "dataflow"):
        return beam_args
    given = {_option_name(a) for a in beam_args}
    if "--sdk_container_image" not in given and not image:
        raise UserError("--runner=DataflowRunner needs the pipeline image as the Dataflow "
                        "worker image: pass --image IMAGE (built from kubeflow/Dockerfile) or "
                        "--beam-arg=--sdk_container_image=IMAGE")
    main_session = {"--save_main_session", "--no_save_main_session"}

    def missing(default):
        name = _option_name(default)
        if name == "--experiments":  # repeatable: other experiments do not replace this one
            return default not in beam_args
        return not (given & main_session if name in main_session else name in given)

    defaults = (f"--sdk_container_image={image}", *DATAFLOW_WORKER_DEFAULTS)
    return beam_args + tuple(d for d in defaults if missing(d))


def dataflow_beam_args(*, project: str, region: str, temp_location: str,
                       image: str) -> Tuple[str, ...]:
    """Beam args that run a job on Dataflow with the pipeline image as its workers."""
    return with_worker_image((f"--runner={DATAFLOW_RUNNER}", f"--project={project}",
                              f"--region={region}", f"--temp_location={temp_location}"), image)


def absolute(uri: Optional[str]) -> Optional[str]:
    """Local paths made absolute; URIs with a scheme (gs://, s3://) unchanged. Everything a
    run records (artifact URIs, the push destination) is then valid from any directory."""
    if not uri or not is_local(uri):
        return uri
    return os.path.abspath(uri)


@dataclasses.dataclass(frozen=True)
class TrainerMachine:
    """The Trainer's own machine on Vertex AI (a CustomJob's MachineSpec): a GPU type and
    count, or a TPU VM (`accelerator_type` TPU_*, with `tpu_topology` where the type needs
    it). The Trainer then runs as a Vertex custom job on the pipeline image."""
    machine_type: str = "n1-standard-8"
    accelerator_type: Optional[str] = None   # e.g. NVIDIA_TESLA_V100, NVIDIA_L4, TPU_V5_LITEPOD
    accelerator_count: int = 0
    tpu_topology: Optional[str] = None       # e.g. 2x2 for ct5lp-hightpu-4t

    def __post_init__(self):
        if self.accelerator_type and self.accelerator_count < 1:
            raise UserError(f"--trainer-accelerator-type {self.accelerator_type}: needs "
                            f"--trainer-accelerator-count >= 1")
        if self.accelerator_count and not self.accelerator_type:
            raise UserError("--trainer-accelerator-count: needs --trainer-accelerator-type")
        if self.tpu_topology and not self.is_tpu:
            raise UserError(f"--trainer-tpu-topology {self.tpu_topology}: needs a TPU "
                            f"--trainer-accelerator-type (TPU_...)")

    @property
    def is_tpu(self) -> bool:
        return bool(self.accelerator_type and self.accelerator_type.startswith("TPU_"))

    def machine_spec(self) -> Dict[str, object]:
        """Vertex's MachineSpec (aiplatform.v1 CustomJobSpec.worker_pool_specs[].machine_spec)."""
        spec = {"machine_type": self.machine_type}
        if self.accelerator_type:
            spec.update(accelerator_type=self.accelerator_type,
                        accelerator_count=self.accelerator_count)
        if self.tpu_topology:
            spec["tpu_topology"] = self.tpu_topology
        return spec


# The files and folders a run reads, by the flag that gives them.
INPUT_FLAGS = {"videos": "--videos", "labels": "--labels", "class_map": "--class-map",
               "pretrained": "--pretrained"}


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    pipeline_name: str = "mbt"
    pipeline_root: str = "out/pipeline_root"
    metadata_path: Optional[str] = "out/metadata.sqlite"  # None on Kubeflow/Vertex
    # Data.
    videos: str = "demo_data/clips"          # folder or bucket prefix the label paths resolve against
    labels: str = "demo_data/labels.csv"
    label_format: str = "generic"            # label_files.FORMATS
    class_map: Optional[str] = "demo_data/class_map.csv"
    noun_class_map: Optional[str] = None     # Epic-Kitchens: nouns; class_map holds the verbs
    encoding: str = "utf-8"                  # text encoding of the label file and class map
    missing_audio: str = "reject"            # reject | silence
    max_damaged_fraction: Optional[float] = None  # None: clip_decoder.MAX_DAMAGED_FRACTION
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS  # longer rows: records of this; 0: whole
    short_side: int = 256                    # stored frames' shorter side (paper crops 224)
    fps: Optional[float] = None              # stored frame rate; None: the lowest that holds
                                             # the preset's sampling (windows.stored_fps)
    video_template: Optional[str] = None     # None: the label format's (label_files)
    presegmented: bool = False               # videos hold only the labelled segment
    splits: Dict[str, int] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SPLITS))
    min_duration: float = 1.0                # less video: a too_short dead letter
    include_waveform: bool = False
    compression: str = "none"                # record files: none | gzip
    decoder_threads: int = 1                 # FFmpeg threads per clip; 0: one per core
    # Model and training.
    preset: str = "mbt-tiny"
    overrides: Dict[str, object] = dataclasses.field(default_factory=dict)
    epochs: int = 3
    batch_size: int = 8
    learning_rate: Optional[float] = None    # None: the paper's 0.5 scaled with batch size
    warmup_epochs: float = 2.5
    train_overrides: Dict[str, object] = dataclasses.field(default_factory=dict)  # TrainConfig
    train_steps: int = 0                     # 0: epochs * examples / batch (TFX needs a value)
    steps_per_epoch: int = 0                 # 0: examples / batch; the Trainer evaluates and
                                             # checkpoints once per epoch
    tpu: Optional[str] = None
    pretrained: Optional[str] = None         # ViT .npz for init-from-vit
    # Evaluation and push.
    min_metric: float = 0.3                  # absolute lower bound (mAP or top-1)
    max_metric_drop: float = 0.0             # allowed drop vs the latest blessed model
    pr_curve_classes: Optional[int] = None   # Evaluator PR curves for class ids 0..N-1;
                                             # None: eval_config.PR_CURVE_CLASSES
    serving_base: str = "out/serving"
    model_name: str = "mbt"
    # Beam.
    beam_args: Tuple[str, ...] = LOCAL_BEAM_ARGS
    decode_beam_args: Tuple[str, ...] = LOCAL_DECODE_BEAM_ARGS
    enable_cache: bool = True
    # Vertex AI: the Trainer as a custom job on this machine (None: inside the pipeline step).
    trainer_machine: Optional[TrainerMachine] = None
    vertex_project: Optional[str] = None
    vertex_region: Optional[str] = None
    image: Optional[str] = None              # the pipeline image, also the custom job's

    @property
    def push_dir(self) -> str:
        return os.path.join(self.serving_base, self.model_name)

    def replace(self, **changes) -> "PipelineSettings":
        return dataclasses.replace(self, **changes)

    def absolute(self) -> "PipelineSettings":
        """The same settings with every local path absolute (see `absolute`)."""
        return self.replace(**{name: absolute(getattr(self, name)) for name in (
            "pipeline_root", "metadata_path", "videos", "labels", "class_map", "noun_class_map",
            "serving_base",
            "pretrained")})

    def local_inputs(self) -> Dict[str, str]:
        """{flag: path} of the inputs the run reads that are paths of this machine."""
        return {flag: getattr(self, field) for field, flag in INPUT_FLAGS.items()
                if getattr(self, field) and is_local(getattr(self, field))}

    def trainer_config(self) -> Dict[str, object]:
        """The Trainer's custom_config (keys documented in components/trainer_module.py)."""
        config = {
            "preset": self.preset,
            "overrides": dict(self.overrides),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "train": {"warmup_epochs": self.warmup_epochs, **self.train_overrides},
            "class_map": self.class_map,
            "noun_class_map": self.noun_class_map,
            "encoding": self.encoding if self.class_map else None,
            # A TPU VM's chips are local to the Trainer's own machine (TPUClusterResolver
            # tpu="local"); TPUStrategy then follows from mbt_keras.strategy.
            "tpu": self.tpu or ("local" if self.trainer_machine and self.trainer_machine.is_tpu
                                else None),
            "init_checkpoint": self.pretrained,
            "learning_rate": self.learning_rate,
            "steps_per_epoch": self.steps_per_epoch or None,
        }
        return {k: v for k, v in config.items() if v is not None}


def with_class_count(settings: PipelineSettings) -> PipelineSettings:
    """Set num_classes from the class map unless the user overrode it: the class map, not
    the preset, knows how many classes the data has (verbs and nouns with a noun class
    map)."""
    if not settings.class_map or "num_classes" in settings.overrides:
        return settings
    from components.preprocess.label_files import num_classes, read_class_maps
    count = num_classes(read_class_maps(settings.class_map, settings.noun_class_map,
                                        settings.encoding))
    return settings.replace(overrides={**settings.overrides, "num_classes": count})
