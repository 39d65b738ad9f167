"""``videomae``: a Hugging Face VideoMAE encoder loaded from a local directory (``--weights DIR``).

Dimension letters: B clips, N frames of a clip (the model's ``num_frames``), h x w its ``image_size``, P tokens,
C = ``hidden_size``.

The directory is what ``save_pretrained`` writes (``config.json``, ``model.safetensors`` or
``pytorch_model.bin``) plus the image processor's ``preprocessor_config.json``; nothing is downloaded. The
network is ``transformers.VideoMAEModel.from_pretrained(DIR)``; a clip's feature is the mean of its last hidden
states over the tokens (the pooling of ``VideoMAEForVideoClassification``, without its classifier). Frames are
prepared as the image processor says: resize (``size``: the shorter side or height x width), centre crop
(``crop_size``), ``rescale_factor``, ``image_mean`` / ``image_std`` (its defaults where a key is absent).
transformers is optional: ``pip install transformers``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cltdr.errors import CheckpointError, ConfigError
from cltdr.extract.backbones import Backbone, BackboneSpec, Resize, WeightsInfo, register_backbone

# VideoMAEImageProcessor's defaults (transformers), for keys a preprocessor_config.json leaves out.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_FILES = ("config.json", "preprocessor_config.json", "*.safetensors", "*.bin")


class VideoMAEFeatures(nn.Module):
    """Clips (B, 3, N, h, w) -> the token mean of VideoMAE's last hidden states (B, C)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        hidden = self.model(pixel_values=clips.transpose(1, 2)).last_hidden_state  # (B, N, 3, h, w) -> (B, P, C)
        return hidden.mean(dim=1)


def _side(value: Any, key: str, where: Path) -> int | tuple[int, int]:
    """A processor size entry: {'shortest_edge': s} -> s, {'height': h, 'width': w} -> (h, w)."""
    if isinstance(value, dict) and "shortest_edge" in value:
        return int(value["shortest_edge"])
    if isinstance(value, dict) and {"height", "width"} <= set(value):
        return int(value["height"]), int(value["width"])
    if isinstance(value, int):
        return value
    raise ConfigError(f"{where}: key {key!r} is {value!r}; expected {{'shortest_edge': S}} or {{'height', 'width'}}")


def processor_preprocess(directory: Path) -> Resize:
    """The image processor's preprocessing, read from ``preprocessor_config.json``."""
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        raise CheckpointError(f"backbone videomae: {directory} has no preprocessor_config.json (the image processor)")
    proc = json.loads(path.read_text())
    size = _side(proc.get("size", {"shortest_edge": 224}), "size", path)
    crop = _side(proc.get("crop_size", {"height": 224, "width": 224}), "crop_size", path)
    if isinstance(crop, int):
        crop = (crop, crop)
    if abs(float(proc.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9 or not proc.get("do_rescale", True):
        raise ConfigError(f"{path}: only rescale_factor 1/255 is supported")
    normalize = proc.get("do_normalize", True)
    mean = tuple(proc.get("image_mean", IMAGENET_MEAN)) if normalize else (0.0, 0.0, 0.0)
    std = tuple(proc.get("image_std", IMAGENET_STD)) if normalize else (1.0, 1.0, 1.0)
    return Resize(size, crop if proc.get("do_center_crop", True) else None, mean, std)


def sha256_directory(directory: Path) -> str:
    """SHA-256 over the model's files (names and contents, sorted): config, processor config and weights."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in WEIGHT_FILES for p in directory.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build(weights: str, num_frames: int | None) -> Backbone:
    if weights in ("random", "pretrained"):
        raise ConfigError(
            "backbone videomae loads a local model directory (save_pretrained + preprocessor_config.json): "
            "pass --weights DIR"
        )
    directory = Path(weights)
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"backbone videomae: {directory} is not a model directory (no config.json)")
    try:
        from transformers import VideoMAEModel
    except ImportError:
        raise ConfigError("backbone videomae needs transformers: pip install transformers") from None
    try:
        model = VideoMAEModel.from_pretrained(str(directory))
    except Exception as err:  # missing or foreign weight files
        raise CheckpointError(
            f"backbone videomae: {directory} cannot be loaded ({type(err).__name__}: {err})"
        ) from None
    num_frames = num_frames or model.config.num_frames
    if num_frames != model.config.num_frames:
        raise ConfigError(
            f"backbone videomae ({directory}) takes clips of exactly {model.config.num_frames} frames "
            f"(its config's num_frames), not --num-frames {num_frames}"
        )
    preprocess = processor_preprocess(directory)
    size = model.config.image_size
    if preprocess.crop is not None and tuple(preprocess.crop) != (size, size):
        raise ConfigError(f"{directory}: crop_size {preprocess.crop} is not the model's image_size {size}")
    info = WeightsInfo("directory", str(directory.resolve()), sha256_directory(directory))
    return Backbone("videomae", VideoMAEFeatures(model), preprocess, int(model.config.hidden_size), info, num_frames)


register_backbone(
    "videomae",
    BackboneSpec(
        lambda weights, num_frames: build(weights, num_frames),
        needs="transformers (optional: pip install transformers) and --weights DIR, a local model directory",
        summary="Hugging Face VideoMAE encoder (token mean of the last hidden states)",
    ),
)
