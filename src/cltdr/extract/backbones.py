"""The backbone interface, the registry of backbones by name, and the weights they load.

Dimension letters: n frames, H x W a decoded frame, h x w a preprocessed one, B clips, N frames of a clip,
C feature channels.

A :class:`Backbone` is a network from clips (B, 3, N, h, w) to features (B, C), the preprocessing that turns
decoded frames (n, H, W, 3) uint8 into its input (3, n, h, w) float (resizing, cropping, normalising: per frame,
so it runs once per frame, not once per clip), and a description of its weights for the feature card. A
:class:`BackboneSpec` builds one by name; :func:`register_backbone` adds a name (the built-in ones: ``tiny3d``,
torchvision's video models, ``videomae``).

Weights (``--weights``): ``random`` (initialised from :data:`RANDOM_SEED`, so the same features come out again
at detection time; the card records the SHA-256 of the initial parameters), ``pretrained`` (a backbone's own
published weights: torchvision's cache, downloaded when online), or a path (a state-dict file; VideoMAE: a
model directory). Every failure is a :class:`~cltdr.errors.CltdrError` naming the backbone and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Protocol

import torch
import torch.nn.functional as F

from cltdr.errors import CheckpointError, ConfigError

RANDOM_SEED = 0  # the seed of ``--weights random``: recorded in the card, so detection rebuilds the same network
WeightsKind = Literal["random", "file", "pretrained", "directory"]


class Preprocessing(Protocol):
    """Decoded frames (n, H, W, 3) uint8 -> the network's input frames (3, n, h, w) float."""

    def __call__(self, frames: torch.Tensor) -> torch.Tensor: ...

    def describe(self) -> dict[str, Any]:
        """What it does, for the feature card (JSON values)."""
        ...


@dataclass(frozen=True)
class Resize:
    """Resize, centre-crop, scale to [0, 1] and normalise each frame (bilinear, antialiased: as torchvision).

    ``size``: (h, w) exactly, or one int for the shorter side (aspect ratio kept); ``crop``: (h, w) or None."""

    size: int | tuple[int, int]
    crop: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float().div_(255.0)  # (n, 3, H, W)
        H, W = x.shape[-2:]
        if isinstance(self.size, int):
            scale = self.size / min(H, W)
            size = (max(round(H * scale), 1), max(round(W * scale), 1))
        else:
            size = self.size
        if size != (H, W):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        if self.crop is not None:
            h, w = self.crop
            top, left = max((x.shape[-2] - h) // 2, 0), max((x.shape[-1] - w) // 2, 0)
            x = x[..., top : top + h, left : left + w]
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).transpose(0, 1)  # (3, n, h, w)

    def describe(self) -> dict[str, Any]:
        return {
            "resize": self.size if isinstance(self.size, int) else list(self.size),
            "resize_means": "shorter side" if isinstance(self.size, int) else "height, width",
            "crop": None if self.crop is None else list(self.crop),
            "scale": "1/255",
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": "bilinear, antialiased",
        }


@dataclass(frozen=True)
class WeightsInfo:
    """Which weights a backbone holds, as the card records them."""

    kind: WeightsKind
    source: str | None  # the file or directory (absolute), torchvision's weights name, or None (random)
    sha256: str  # of the file (directory: of its weight files); random: of the initial parameters
    seed: int | None = None  # random: the seed they were drawn from

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "sha256": self.sha256, "seed": self.seed}


@dataclass
class Backbone:
    """A network ready to extract features, with everything the feature card records about it."""

    name: str
    network: torch.nn.Module  # clips (B, 3, N, h, w) float -> features (B, C), in eval mode
    preprocess: Preprocessing
    dim: int  # C
    weights: WeightsInfo
    num_frames: int  # N, the clip length it was built for

    def to(self, device: torch.device) -> Backbone:
        self.network.to(device)
        return self


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a backbone by name: ``build(weights, num_frames)``, ``weights`` being 'random', 'pretrained'
    or a path (see the module docstring), ``num_frames`` the clip length or None for the backbone's usual one;
    ``needs`` says what it requires (help text and errors)."""

    build: Callable[[str, int | None], Backbone]
    needs: str
    default_weights: str = "pretrained"
    summary: str = ""


_REGISTRY: dict[str, BackboneSpec] = {}
_BUILTINS_LOADED = [False]


def register_backbone(name: str, spec: BackboneSpec) -> None:
    """Make ``--backbone name`` build with ``spec`` (replacing a backbone of that name)."""
    _REGISTRY[name] = spec


def _registry() -> dict[str, BackboneSpec]:
    if not _BUILTINS_LOADED[0]:  # the built-in modules register themselves when imported (none imports torchvision)
        _BUILTINS_LOADED[0] = True
        from cltdr.extract import tiny3d, tvmodels, videomae  # noqa: F401

    return _REGISTRY


def backbone_names() -> list[str]:
    return sorted(_registry())


def backbone_spec(name: str) -> BackboneSpec:
    registry = _registry()
    if name not in registry:
        raise ConfigError(f"unknown backbone {name!r}; expected one of {', '.join(sorted(registry))}")
    return registry[name]


def build_backbone(name: str, weights: str | None = None, num_frames: int | None = None) -> Backbone:
    """The backbone ``name`` with ``weights`` (default: the backbone's own default) for clips of ``num_frames``
    (default: its usual clip length), in eval mode on the CPU."""
    spec = backbone_spec(name)
    backbone = spec.build(spec.default_weights if weights is None else str(weights), num_frames)
    backbone.network.eval()
    return backbone


# ------------------------------------------------------------------------------------------------- weights
@contextlib.contextmanager
def seeded(seed: int = RANDOM_SEED) -> Iterator[None]:
    """Draw initial parameters from ``seed`` without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_parameters(network: torch.nn.Module) -> str:
    """SHA-256 of a network's state (names and values, in order): what ``--weights random`` drew."""
    digest = hashlib.sha256()
    for name, value in network.state_dict().items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def random_weights(network: torch.nn.Module) -> WeightsInfo:
    return WeightsInfo("random", None, sha256_parameters(network), RANDOM_SEED)


def read_state_file(path: str | Path, backbone: str) -> tuple[dict[str, torch.Tensor], WeightsInfo]:
    """A state-dict file (a dict of tensors, or one under 'state_dict' / 'model') and its :class:`WeightsInfo`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"backbone {backbone}: weights file {path} does not exist (--weights takes a state-dict file, "
            "'pretrained' or 'random')"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"backbone {backbone}: weights file {path} cannot be read ({err})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"backbone {backbone}: weights file {path} holds no state dict of tensors")
    return state, WeightsInfo("file", str(path.resolve()), sha256_file(path))


def load_state(
    network: torch.nn.Module, state: dict[str, torch.Tensor], source: str, backbone: str, ignore: tuple[str, ...] = ()
) -> None:
    """Load ``state`` into ``network``: every tensor of the network must be there; extra keys are allowed only
    under the prefixes ``ignore`` (a classifier head the backbone drops)."""
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape
        raise CheckpointError(f"backbone {backbone}: weights {source} do not fit its network ({err})") from None
    unexpected = [k for k in result.unexpected_keys if not k.startswith(ignore)]
    if result.missing_keys or unexpected:
        raise CheckpointError(
            f"backbone {backbone}: weights {source} do not fit its network (missing {result.missing_keys[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
