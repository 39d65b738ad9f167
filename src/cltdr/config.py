"""Typed configuration, loaded from YAML.

Every field is documented here; this module is the one table of defaults (THUMOS14 / I3D, SPEC section 4).
An unknown key, a wrong type or an invalid value is a :class:`~cltdr.errors.ConfigError` naming the file
and the dotted key. ``--set key=value`` overrides are applied before validation, so they are checked too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetConfig(_Section):
    """Where the data lives and how its feature grid samples the video (SPEC section 2)."""

    annotation_file: Path = Field(description="Annotation JSON in the ActionFormer/ActivityNet layout.")
    feat_dir: Path = Field(description="Folder with one feature file per video: <feat_dir>/<prefix><id><ext>.")
    feat_prefix: str = Field("", description="File name prefix before the video id.")
    feat_ext: str = Field(".npy", description="File name extension of the feature files.")
    train_subset: str = Field("validation", description="Subset trained on (THUMOS14 trains on 'validation').")
    test_subset: str = Field("test", description="Subset evaluated by `cltdr test`; never used for selection.")
    val_subset: Optional[str] = Field(
        None, description="Optional subset for model selection; when unset the last epoch is kept."
    )
    class_names: Optional[list[str]] = Field(
        None, description="Class list in label order; read from the annotation file's label_id when unset."
    )
    input_dim: int = Field(2048, gt=0, description="Feature channels C of every feature file.")
    feat_stride: float = Field(4, gt=0, description="Frames between consecutive features.")
    num_frames: float = Field(16, gt=0, description="Frames seen by one feature (backbone clip length).")
    default_fps: Optional[float] = Field(
        None, gt=0, description="Frame rate used for videos whose annotation has no fps."
    )
    max_seq_len: int = Field(2304, gt=0, description="Longest training crop, in feature steps.")
    crop_ratio: Optional[tuple[float, float]] = Field(
        (0.9, 1.0), description="Shorter videos are cropped to a random share in this range (None: never)."
    )
    trunc_thresh: float = Field(0.5, ge=0, le=1, description="Share of an action a crop must keep to keep it.")
    noise_std: float = Field(0.0, ge=0, description="Std of the Gaussian noise added to training features.")
    segment_policy: Literal["error", "clip", "drop"] = Field(
        "error", description="What to do with annotated segments that lie outside their video."
    )


class ModelConfig(_Section):
    """CLTDR-GMG architecture (paper + SPEC section 4)."""

    encoder: Literal["gmg"] = Field("gmg", description="Encoder that builds the pyramid.")
    decoder: Literal["cltdr"] = Field("cltdr", description="Decoder applied to every pyramid level.")
    embed_dim: int = Field(512, gt=0, description="Channels D of the projection and the pyramid.")
    num_levels: int = Field(6, ge=1, le=10, description="Pyramid levels L (strides 1, 2, ..., 2^(L-1)).")
    num_full_res_blocks: int = Field(2, ge=0, description="GMG blocks at full resolution before pooling.")
    ffn_dim: int = Field(768, gt=0, description="Hidden width of the FFN in each GMG block.")
    kernel_size: int = Field(3, ge=1, description="Kernel of the depth-wise convs (local branch, filter).")
    drop_path: float = Field(0.1, ge=0, lt=1, description="Stochastic depth rate inside GMG blocks.")
    head_dim: int = Field(512, gt=0, description="Hidden channels of the prediction heads.")
    head_layers: int = Field(3, ge=1, description="Convs per head tower (the last one predicts).")
    num_bins: int = Field(16, ge=1, description="Trident-head bins B (16 THUMOS14, 12 ActivityNet, 14 HACS).")
    cls_prior_prob: float = Field(0.01, gt=0, lt=1, description="Initial foreground probability of heads.")
    regression_range: Optional[list[tuple[float, float]]] = Field(
        None,
        description="Per level [min, max] of an action's larger regression distance, in feature steps; "
        "default [0,4], [4,8], ..., [2^(L), inf).",
    )
    center_sample_radius: float = Field(1.5, ge=0, description="Centre sampling radius, in level strides.")
    multi_label: bool = Field(
        False,
        description="Label assignment for dense, overlapping labels (MultiTHUMOS): a point is positive for every "
        "class with a qualifying action, not only the shortest action's.",
    )

    def level_ranges(self) -> list[tuple[float, float]]:
        if self.regression_range is not None:
            return [tuple(r) for r in self.regression_range]
        ranges = [(0.0, 4.0)] + [(2.0 ** (l + 1), 2.0 ** (l + 2)) for l in range(1, self.num_levels)]
        ranges[-1] = (ranges[-1][0], math.inf)
        return ranges

    @model_validator(mode="after")
    def _check_ranges(self):
        if self.regression_range is not None and len(self.regression_range) != self.num_levels:
            raise ValueError(
                f"regression_range has {len(self.regression_range)} entries; num_levels is {self.num_levels}"
            )
        return self


class LossConfig(_Section):
    """Loss of eq. 13 (varifocal + IoU-family), with the released code's normaliser and mix."""

    reg_loss: Literal["diou", "giou", "iou"] = Field("diou", description="IoU-family regression loss.")
    vfl_alpha: float = Field(0.75, ge=0, description="Varifocal weight of negatives.")
    vfl_gamma: float = Field(2.0, ge=0, description="Varifocal focusing exponent of negatives.")
    refined_weight: float = Field(
        0.7, ge=0, le=1, description="Weight of the refined outputs' loss; the coarse ones get 1 - this."
    )
    normalizer: Literal["positives", "paper"] = Field(
        "positives",
        description="'positives': every term over an EMA of the positive count (released code); "
        "'paper': eq. 13 literally, negatives over the negative count.",
    )
    normalizer_momentum: float = Field(0.9, ge=0, lt=1, description="EMA momentum of the positive count.")
    normalizer_init: float = Field(100.0, gt=0, description="Initial value of that EMA.")


class TrainConfig(_Section):
    """Optimisation (AdamW, linear warm-up + cosine decay, clipping, EMA)."""

    epochs: int = Field(40, ge=1, description="Epochs after warm-up.")
    warmup_epochs: int = Field(20, ge=0, description="Epochs of linear warm-up from 0 to lr.")
    lr: float = Field(1e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.035, ge=0, description="AdamW weight decay (not on norms and biases).")
    batch_size: int = Field(2, ge=1, description="Videos per batch.")
    clip_grad_norm: Optional[float] = Field(1.0, gt=0, description="Gradient clipping L2 norm (None: off).")
    ema_decay: Optional[float] = Field(0.999, gt=0, lt=1, description="Model EMA decay (None: no EMA).")
    seed: int = Field(2024, description="Seed of initialisation, crops and noise.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    device: str = Field("auto", description="'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'.")
    log_every: int = Field(20, ge=1, description="Iterations between log lines.")


class TestConfig(_Section):
    """Post-processing and evaluation (SPEC sections 3 and 4)."""

    __test__ = False  # not a pytest class

    score_threshold: float = Field(1e-3, ge=0, le=1, description="Drop (step, class) scores below this.")
    pre_nms_topk: int = Field(2000, ge=1, description="Candidates kept per level before NMS.")
    min_segment_length: float = Field(0.05, ge=0, description="Drop segments shorter than this (steps).")
    nms_sigma: float = Field(0.5, gt=0, description="Gaussian Soft-NMS sigma.")
    voting_iou: Optional[float] = Field(0.7, gt=0, le=1, description="Score-voting IoU (None: no voting).")
    max_detections: int = Field(2000, ge=1, description="Detections kept per video.")
    tiou_thresholds: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        [0.3, 0.4, 0.5, 0.6, 0.7], min_length=1, description="tIoU thresholds of the mAP."
    )


class Config(_Section):
    """A whole experiment: one YAML file with these five sections."""

    dataset: DatasetConfig
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    test: TestConfig = TestConfig()

    @model_validator(mode="after")
    def _check_lengths(self):
        divisor = 2 ** (self.model.num_levels - 1)
        if self.dataset.max_seq_len < divisor:
            raise ValueError(
                f"dataset.max_seq_len={self.dataset.max_seq_len} is shorter than the coarsest stride "
                f"{divisor} of a {self.model.num_levels}-level pyramid"
            )
        return self

    @property
    def divisor(self) -> int:
        """Batches are padded to a multiple of this, the coarsest pyramid stride."""
        return 2 ** (self.model.num_levels - 1)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  unknown key '{key}'")
        elif e["type"] == "missing":
            lines.append(f"  missing key '{key}'")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  key '{key}': {e['msg']}{shown}")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (['a', 'b'], value parsed as YAML, so numbers, lists and null work)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value (e.g. train.lr=1e-4)")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{item}': value is not valid YAML ({e})") from None
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def config_from_dict(data: Any, source: str = "<dict>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: expected a mapping of sections, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply ``key=value`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    data = apply_overrides(data or {}, overrides or [])
    return config_from_dict(data, str(path))
