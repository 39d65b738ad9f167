"""torchvision's video models as backbones: ``r3d_18``, ``r2plus1d_18``, ``s3d``, ``mvit_v2_s``, ``swin3d_t``.

Dimension letters: B clips, N frames of a clip, h x w a preprocessed frame, C feature channels.

Each is ``torchvision.models.get_model(name, weights=...)`` with its classifier replaced by the identity, so a
clip (B, 3, N, h, w) gives the pooled features (B, C) the classifier read. Frames are prepared by the weights'
own transforms (``<Name>_Weights.DEFAULT.transforms()``: resize, centre crop, scale, the Kinetics mean and std),
whatever weights are loaded, since features are only comparable under one preprocessing.

Weights: ``pretrained`` is the Kinetics-400 checkpoint of ``<Name>_Weights.DEFAULT``, read from torch's hub cache
(``$TORCH_HOME/hub/checkpoints``) and downloaded there when online; ``random`` initialises from the fixed seed;
a path loads a state dict (its classifier keys are ignored). torchvision is optional: ``pip install torchvision``
(a build matching the installed torch) or ``pip install 'cltdr[torchvision]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from cltdr.errors import CheckpointError, ConfigError
from cltdr.extract.backbones import (
    Backbone,
    BackboneSpec,
    WeightsInfo,
    load_state,
    random_weights,
    read_state_file,
    register_backbone,
    seeded,
    sha256_file,
)

# name -> the classifier attribute replaced by the identity (its input is the feature), and the clip length
# the network requires exactly (None: any length from the weights' meta "min_temporal_size" on).
MODELS: dict[str, tuple[str, int | None]] = {
    "r3d_18": ("fc", None),
    "r2plus1d_18": ("fc", None),
    "s3d": ("classifier", None),
    "mvit_v2_s": ("head", 16),  # its relative positional embeddings are sized for 16 frames
    "swin3d_t": ("head", None),
}
NUM_FRAMES = 16  # the default clip length (the Kinetics recipes' and THUMOS14 I3D features')


def import_torchvision() -> Any:
    """torchvision, or an error saying why it cannot be used (missing, or built for another torch)."""
    try:
        import torchvision
        import torchvision.models.video  # noqa: F401
    except Exception as err:  # a mismatched build fails at import with RuntimeError ("operator ... does not exist")
        raise ConfigError(
            f"torchvision's video backbones need torchvision built for torch {torch.__version__} "
            f"({type(err).__name__}: {err}); install the matching build (pip install torchvision, or "
            "pip install 'cltdr[torchvision]'), or use --backbone tiny3d"
        ) from None
    return torchvision


class TorchvisionPreprocess:
    """The weights' transforms (``VideoClassification``) on decoded frames (n, H, W, 3) -> (3, n, h, w)."""

    def __init__(self, weights: Any):
        self.name = f"{type(weights).__name__}.{weights.name}"
        self.transforms = weights.transforms()

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return self.transforms(frames.permute(0, 3, 1, 2))  # (n, 3, H, W) read as (T, C, H, W) -> (3, n, h, w)

    def describe(self) -> dict[str, Any]:
        t = self.transforms
        return {
            "transforms": f"torchvision {self.name}.transforms()",
            "resize": list(t.resize_size),
            "resize_means": "shorter side" if len(t.resize_size) == 1 else "height, width",
            "crop": list(t.crop_size),
            "scale": "1/255",
            "mean": list(t.mean),
            "std": list(t.std),
            "interpolation": t.interpolation.value,
        }


def _pretrained(name: str, default: Any) -> tuple[nn.Module, WeightsInfo]:
    """The network with the published weights, from torch's hub cache or downloaded into it."""
    from torchvision.models import get_model

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(default.url)
    label = f"{type(default).__name__}.{default.name}"
    try:
        network = get_model(name, weights=default)
    except Exception as err:  # offline: URLError / OSError / socket errors, depending on the platform
        raise CheckpointError(
            f"backbone {name}: its pretrained weights {label} are not in torch's cache ({cached}) and could not be "
            f"downloaded ({type(err).__name__}: {err}); download {default.url} into {cached.parent} on a machine "
            "with internet, or pass --weights PATH (a state-dict file) or --weights random"
        ) from None
    return network, WeightsInfo("pretrained", label, sha256_file(cached))


def build(name: str, weights: str, num_frames: int | None) -> Backbone:
    import_torchvision()
    from torchvision.models import get_model, get_model_weights

    head, exact = MODELS[name]
    default = get_model_weights(name).DEFAULT
    least = int(default.meta.get("min_temporal_size", 1))
    num_frames = num_frames or exact or NUM_FRAMES
    if (exact is not None and num_frames != exact) or num_frames < least:
        wanted = f"exactly {exact}" if exact is not None else f"at least {least}"
        raise ConfigError(f"backbone {name} takes clips of {wanted} frames, not --num-frames {num_frames}")
    if weights == "pretrained":
        network, info = _pretrained(name, default)
        dim = _drop_head(network, head)
    else:
        with seeded():
            network = get_model(name, weights=None)
        dim = _drop_head(network, head)
        if weights == "random":
            info = random_weights(network)
        else:
            state, info = read_state_file(weights, name)
            load_state(network, state, str(weights), name, ignore=(f"{head}.",))
    return Backbone(name, network, TorchvisionPreprocess(default), dim, info, num_frames)


def _drop_head(network: nn.Module, head: str) -> int:
    """Replace the classifier ``head`` by the identity; C, the width of what it read (its last layer's input)."""
    last = [m for m in getattr(network, head).modules() if isinstance(m, (nn.Linear, nn.Conv3d))][-1]
    setattr(network, head, nn.Identity())
    return int(last.in_features if isinstance(last, nn.Linear) else last.in_channels)


def _builder(name: str) -> Callable[[str, int | None], Backbone]:
    return lambda weights, num_frames: build(name, weights, num_frames)


for _name in MODELS:
    register_backbone(
        _name,
        BackboneSpec(
            _builder(_name),
            needs="torchvision (optional: pip install torchvision); pretrained weights from torch's cache, "
            "--weights PATH or random",
            summary=f"torchvision.models.video {_name}, Kinetics-400",
        ),
    )
