"""Everything a user changes about a pipeline run, as one dataclass (configuration as data).

`mbt pipeline run` flags, the demo and the Kubeflow/Vertex compiler all build one of these;
`create_pipeline` reads nothing else.
"""
import dataclasses
import os
from typing import Dict, Optional, Tuple

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


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    pipeline_name: str = "mbt"
    pipeline_root: str = "out/pipeline_root"
    metadata_path: Optional[str] = "out/metadata.sqlite"  # None on Kubeflow/Vertex
    # Data.
    videos: str = "demo_data/clips"          # folder or bucket prefix the label paths resolve against
    labels: str = "demo_data/labels.csv"
    label_format: str = "generic"            # generic | audioset | vggsound
    class_map: Optional[str] = "demo_data/class_map.csv"
    missing_audio: str = "reject"            # reject | silence
    short_side: int = 256                    # stored frames' shorter side (paper crops 224)
    # Model and training.
    preset: str = "mbt-tiny"
    overrides: Dict[str, object] = dataclasses.field(default_factory=dict)
    epochs: int = 3
    batch_size: int = 8
    learning_rate: Optional[float] = None    # None: the paper's 0.5 scaled with batch size
    warmup_epochs: float = 2.5
    train_overrides: Dict[str, object] = dataclasses.field(default_factory=dict)  # TrainConfig
    train_steps: int = 0                     # 0: epochs * examples / batch (TFX needs a value)
    tpu: Optional[str] = None
    pretrained: Optional[str] = None         # ViT .npz for init-from-vit
    # Evaluation and push.
    min_metric: float = 0.3                  # absolute lower bound (mAP or top-1)
    max_metric_drop: float = 0.0             # allowed drop vs the latest blessed model
    serving_base: str = "out/serving"
    model_name: str = "mbt"
    # Beam.
    beam_args: Tuple[str, ...] = LOCAL_BEAM_ARGS
    decode_beam_args: Tuple[str, ...] = LOCAL_DECODE_BEAM_ARGS
    enable_cache: bool = True

    @property
    def push_dir(self) -> str:
        return os.path.join(self.serving_base, self.model_name)

    def replace(self, **changes) -> "PipelineSettings":
        return dataclasses.replace(self, **changes)

    def trainer_config(self) -> Dict[str, object]:
        """The Trainer's custom_config (keys documented in components/trainer_module.py)."""
        config = {
            "preset": self.preset,
            "overrides": dict(self.overrides),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "train": {"warmup_epochs": self.warmup_epochs, **self.train_overrides},
            "class_map": self.class_map,
            "tpu": self.tpu,
            "init_checkpoint": self.pretrained,
            "learning_rate": self.learning_rate,
        }
        return {k: v for k, v in config.items() if v is not None}


def with_class_count(settings: PipelineSettings) -> PipelineSettings:
    """Set num_classes from the class map unless the user overrode it: the class map, not
    the preset, knows how many classes the data has."""
    if not settings.class_map or "num_classes" in settings.overrides:
        return settings
    from components.preprocess.label_files import read_class_map
    count = len(read_class_map(settings.class_map))
    return settings.replace(overrides={**settings.overrides, "num_classes": count})
