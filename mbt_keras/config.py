"""Model configuration as data: one dataclass, presets as dicts of field values.

Every fusion variant of the paper (sections 3.2-3.4) is one `ModelConfig`; a
preset is a set of field values, never a subclass.
"""
import dataclasses
import json
import numbers
from typing import Optional, Tuple

from mbt_keras.user_error import UserError

FUSIONS = ("vanilla", "cross", "bottleneck")
# Late fusion is not a FUSIONS mode: it is any of them with fusion_layer = num_layers (paper 3.2).
LATE = "late"
HEADS = ("multilabel", "singlelabel", "verb_noun")
MODALITIES = ("rgb", "spec")
RGB_TOKENIZERS = ("patch", "tubelet")
BOTTLENECK_UPDATES = ("sequential", "mean")
CLASSIFIERS = ("token", "gap")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of MBT. Defaults are the paper's ViT-B/16 MBT (section 4.2)."""
    num_layers: int = 12
    num_heads: int = 12
    hidden_size: int = 768
    mlp_dim: int = 3072
    patch_size: int = 16
    # Inputs.
    modalities: Tuple[str, ...] = ("rgb", "spec")
    num_frames: int = 8
    image_size: int = 224
    spec_frames: int = 800          # 100 * t for t = 8 s
    mel_bins: int = 128
    spec_channels: int = 1          # 3 tiles the spectrogram, as the released models do
    rgb_tokenizer: str = "patch"    # "tubelet": 16x16xT 3D patches
    tubelet_frames: int = 2
    # Fusion (3.2, 3.3).
    fusion: str = "bottleneck"
    fusion_layer: int = 8           # Lf: 0 early, num_layers late
    num_bottlenecks: int = 4        # B
    bottleneck_update: str = "sequential"  # eq. 8-9; "mean" as the released code
    # Regularisation.
    dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path: float = 0.3          # stochastic depth, max rate at the last layer
    stochastic_depth_rescale: bool = True  # kept branches x 1/(1-p); Scenic: False
    # Classification (3.4).
    head: str = "multilabel"
    num_classes: Tuple[int, ...] = (527,)  # two entries for verb_noun
    classifier: str = "token"       # "gap": mean over all modality tokens
    final_norm: bool = True         # LayerNorm over all tokens after the encoder
    pre_logits_size: Optional[int] = None
    # Input normalisation folded into the model (released checkpoints need it).
    # AST's AudioSet statistics: (x - mean) / std with std = 2 * 4.5689974.
    spec_mean: float = -4.2677393
    spec_std: float = 9.1379948
    rgb_scale: str = "unit"         # "unit": [0,1] in; "symmetric": mapped to [-1,1]

    def __post_init__(self):
        def need(ok, field, why):
            if not ok:
                raise UserError(f"ModelConfig.{field}={getattr(self, field)!r}: {why}")
        need(self.fusion in FUSIONS, "fusion", f"unknown fusion, expected one of {FUSIONS}")
        need(self.head in HEADS, "head", f"unknown head, expected one of {HEADS}")
        need(self.rgb_tokenizer in RGB_TOKENIZERS, "rgb_tokenizer", f"expected one of {RGB_TOKENIZERS}")
        need(self.bottleneck_update in BOTTLENECK_UPDATES, "bottleneck_update",
             f"expected one of {BOTTLENECK_UPDATES}")
        need(self.classifier in CLASSIFIERS, "classifier", f"expected one of {CLASSIFIERS}")
        need(self.rgb_scale in ("unit", "symmetric"), "rgb_scale", "expected 'unit' or 'symmetric'")
        need(len(self.modalities) >= 1 and all(m in MODALITIES for m in self.modalities)
             and len(set(self.modalities)) == len(self.modalities),
             "modalities", f"expected a non-empty subset of {MODALITIES}")
        need(self.num_layers >= 1, "num_layers", "must be >= 1")
        need(0 <= self.fusion_layer <= self.num_layers, "fusion_layer",
             f"must be between 0 and num_layers={self.num_layers}")
        need(self.fusion != "bottleneck" or self.num_bottlenecks >= 1, "num_bottlenecks",
             "bottleneck fusion needs at least 1 bottleneck token")
        need(self.hidden_size % self.num_heads == 0, "hidden_size",
             f"must be divisible by num_heads={self.num_heads}")
        need(self.spec_frames % self.patch_size == 0, "spec_frames",
             f"must be divisible by patch_size={self.patch_size}")
        need(self.mel_bins % self.patch_size == 0, "mel_bins",
             f"must be divisible by patch_size={self.patch_size}")
        need(self.image_size % self.patch_size == 0, "image_size",
             f"must be divisible by patch_size={self.patch_size}")
        need(self.spec_channels in (1, 3), "spec_channels", "must be 1 or 3")
        need(self.rgb_tokenizer != "tubelet" or self.num_frames % self.tubelet_frames == 0,
             "num_frames", f"must be divisible by tubelet_frames={self.tubelet_frames}")
        expected_heads = 2 if self.head == "verb_noun" else 1
        need(len(self.num_classes) == expected_heads and all(c >= 1 for c in self.num_classes),
             "num_classes", f"head {self.head!r} needs {expected_heads} positive class count(s)")
        need(0.0 <= self.drop_path < 1.0, "drop_path", "must be in [0, 1)")

    @property
    def fused(self) -> bool:
        """True when two modalities exchange information somewhere (Lf < L)."""
        return len(self.modalities) == 2 and self.fusion_layer < self.num_layers

    def replace(self, **overrides) -> "ModelConfig":
        return dataclasses.replace(self, **_coerce(overrides))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        return cls(**_coerce(values))


def _coerce(values: dict) -> dict:
    """Accept JSON/flag spellings: lists for tuples, a bare int for num_classes."""
    out = dict(values)
    if "num_classes" in out and isinstance(out["num_classes"], int):
        out["num_classes"] = (out["num_classes"],)
    for key in ("num_classes", "modalities"):
        if key in out and isinstance(out[key], (list, str)):
            items = out[key].split(",") if isinstance(out[key], str) else out[key]
            try:
                out[key] = tuple(int(v) if key == "num_classes" else v for v in items)
            except ValueError:
                raise UserError(f"{key}={values[key]!r}: expected comma-separated "
                                "class counts, e.g. 527 or 97,300") from None
    return checked_fields(ModelConfig, out)


def checked_fields(cls, values: dict) -> dict:
    """`values` for the dataclass `cls`; an unknown field, or a value whose type is not the
    field's (`--set num_layers=six`, `--train-set epochs=1.5`), is a UserError naming it,
    so that the dataclass's own range checks compare numbers with numbers."""
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(fields)}")
    for name, value in values.items():
        default = fields[name]
        expected = (bool if isinstance(default, bool) else numbers.Integral
                    if isinstance(default, int) else numbers.Real
                    if isinstance(default, float) else None)
        if expected and (not isinstance(value, expected) or
                         (isinstance(value, bool) and expected is not bool)):
            raise UserError(f"{cls.__name__}.{name}={value!r}: expected "
                            f"{type(default).__name__.replace('bool', 'true or false')}")
    return values


PRESETS = {
    # The paper's MBT with ViT-Base/16 encoders (section 4.2): every default above.
    "mbt-b16": {},
    # The released Scenic MBT-B/16x2 AudioSet models (checkpoint issue).
    "mbt-b16x2-scenic": dict(num_frames=32, rgb_tokenizer="tubelet", tubelet_frames=2,
                             spec_channels=3, bottleneck_update="mean", classifier="gap",
                             final_norm=True, spec_mean=1.102, spec_std=2.762,
                             rgb_scale="symmetric", stochastic_depth_rescale=False),
    # Mid-size model for benchmarks.
    "mbt-small": dict(num_layers=6, num_heads=6, hidden_size=384, mlp_dim=1536,
                      num_frames=4, image_size=112, spec_frames=400, fusion_layer=4,
                      drop_path=0.1, num_classes=(16,)),
    # Tiny models for the CPU demo and the tests.
    "mbt-tiny": dict(num_layers=4, num_heads=2, hidden_size=64, mlp_dim=128,
                     num_frames=4, image_size=64, spec_frames=192, fusion_layer=2,
                     drop_path=0.0, num_classes=(8,)),
    "mbt-micro": dict(num_layers=2, num_heads=2, hidden_size=32, mlp_dim=64,
                      num_frames=2, image_size=32, spec_frames=96, fusion_layer=1,
                      drop_path=0.0, num_classes=(4,)),
}


def from_preset(name: str, **overrides) -> ModelConfig:
    """The preset's config with `overrides` applied; unknown names list the presets."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return ModelConfig.from_dict({**PRESETS[name], **overrides})


def parse_assignments(items) -> dict:
    """`field=value` command-line pairs -> dict; values are JSON where they parse, else strings."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"expected FIELD=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
