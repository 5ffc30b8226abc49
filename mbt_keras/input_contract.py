"""What a client must know to call an exported model, written into the SavedModel at export.

One JSON document (`InputContract`), stored as the `contract.CONTRACT_ASSET` asset and
returned by the `contract.SIG_CONTRACT` signature, so a client learns the window, rates,
image size, classes and input bounds from a server or a SavedModel directory alike and
hard-codes none of them. No TensorFlow import: `serving/` reads it without training code.
"""
import dataclasses
import json
from typing import Dict, List, Optional, Tuple

from mbt_keras import contract
from mbt_keras.config import PRESETS, ModelConfig, from_preset

VERSION = 1


@dataclasses.dataclass(frozen=True)
class InputLimits:
    """Bounds the exported signatures enforce (INVALID_ARGUMENT beyond them)."""
    min_samples: int                  # the model's window: shorter audio is refused
    max_samples: int = contract.MAX_WAVEFORM_SAMPLES
    max_frames: int = contract.MAX_FRAMES
    min_image_side: int = contract.MIN_IMAGE_SIDE
    max_image_side: int = contract.MAX_IMAGE_SIDE
    waveform_limit: float = contract.WAVEFORM_LIMIT


@dataclasses.dataclass(frozen=True)
class InputContract:
    """The model's input window and labels; `num_frames` are taken evenly over
    `window_seconds` of video decoded at `fps`, with the same `window_seconds` of audio."""
    preset: str
    num_frames: int
    window_seconds: float
    fps: float
    sample_rate: int
    image_size: int
    modalities: Tuple[str, ...]
    class_names: Tuple[str, ...]
    head: str                         # config.HEADS
    multi_label: bool                 # sigmoid scores; False: softmax (per head)
    num_classes: Tuple[int, ...]
    fusion: Dict[str, object]         # for humans: how the modalities meet
    limits: InputLimits
    version: int = VERSION
    # Every ModelConfig field (ModelConfig.to_dict), so tools that need the Keras graph
    # (attention rollout) rebuild it over the exported variables; None in older exports.
    model_config: Optional[Dict[str, object]] = None

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text) -> "InputContract":
        """Parse a contract; keys a newer exporter added are ignored (old clients keep working)."""
        values = json.loads(text)
        limits = InputLimits(**{k: v for k, v in values["limits"].items() if k in _LIMIT_FIELDS})
        if values.get("model_config") is not None:  # JSON lists back to the config's tuples
            values["model_config"] = ModelConfig.from_dict(values["model_config"]).to_dict()
        return cls(**{k: tuple(v) if isinstance(v, list) else v
                      for k, v in values.items() if k in _FIELDS}, limits=limits)


_FIELDS = {f.name for f in dataclasses.fields(InputContract)} - {"limits"}
_LIMIT_FIELDS = {f.name for f in dataclasses.fields(InputLimits)}


def preset_name(config: ModelConfig) -> str:
    """The preset `config` was built from (up to its head and class counts, which the data
    decides), else "custom"."""
    for name in PRESETS:
        if from_preset(name, head=config.head, num_classes=config.num_classes) == config:
            return name
    return "custom"


def for_model(config: ModelConfig, class_names: List[str], *, fps: float = contract.FPS,
              preset: Optional[str] = None) -> InputContract:
    """The contract of a model built from `config`; `fps` is the rate its training frames
    were stored at (`mbt preprocess --fps`)."""
    window = config.spec_frames / contract.SPEC_FRAMES_PER_SECOND
    return InputContract(
        preset=preset or preset_name(config), num_frames=config.num_frames,
        window_seconds=window, fps=float(fps), sample_rate=contract.SAMPLE_RATE,
        image_size=config.image_size, modalities=tuple(config.modalities),
        class_names=tuple(class_names), head=config.head, multi_label=config.head == "multilabel",
        num_classes=tuple(config.num_classes),
        fusion={"fusion": config.fusion, "fusion_layer": config.fusion_layer,
                "num_layers": config.num_layers, "num_bottlenecks": config.num_bottlenecks,
                "bottleneck_update": config.bottleneck_update},
        limits=InputLimits(min_samples=config.spec_frames * contract.HOP_SAMPLES),
        model_config=config.to_dict())
