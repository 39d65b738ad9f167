"""Reading the authors' released checkpoints (``.pth.tar`` of github LiQiang0307/CLTDR-GMG) into
``model.variant: released`` (``cltdr.model.released``).

Their file is a dict holding ``state_dict`` (the optimiser's weights) and ``state_dict_ema`` (the EMA weights
their evaluation loads), with ``module.`` prefixes from DataParallel, plus ``epoch``, ``optimizer``,
``scheduler`` and sometimes ``mAP``. Every tensor is mapped onto ours by name (:data:`RULES`) and shape; a
tensor that maps nowhere, a tensor of ours that nothing maps to, or a shape that does not fit is an error
naming the key. Shapes fit when they agree after dropping singleton axes (their LayerNorm weights are
(1, D, 1), ours (D,); their attention FC is a (D, D, 1) conv, ours a (D, D) linear map).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch
from torch import Tensor, nn

from cltdr.errors import CheckpointError

# (their key, ours) as a full regular expression and its expansion; the first rule that matches decides.
_BLOCK = r"backbone\.(stem|branch)\.(\d+)\."
_HEAD = r"(cls_head|start_head|end_head)\."
RULES: tuple[tuple[str, str], ...] = (
    (r"backbone\.embd\.(\d+)\.conv\.(weight)", r"encoder.embed.\1.\2"),
    (r"backbone\.embd_norm\.(\d+)\.(weight|bias)", r"encoder.embed_norms.\1.\2"),
    (_BLOCK + r"(w1|b1|w2|b2)", r"encoder.\1.\2.global_filter.\3"),
    (_BLOCK + r"ln\.(weight|bias)", r"encoder.\1.\2.norm.\3"),
    (_BLOCK + r"fc\.(weight|bias)", r"encoder.\1.\2.instant.\3"),
    (_BLOCK + r"convw\.(weight|bias)", r"encoder.\1.\2.local.\3"),
    (_BLOCK + r"gn\.(weight|bias)", r"encoder.\1.\2.ffn_norm.\3"),
    (_BLOCK + r"mlp\.(0|2)\.(weight|bias)", r"encoder.\1.\2.ffn.\3.\4"),
    (_BLOCK + r"drop_path_out\.scale", r"encoder.\1.\2.mix_path.scale"),
    (_BLOCK + r"drop_path_mlp\.scale", r"encoder.\1.\2.ffn_path.scale"),
    (r"neck\.fpn_norms\.(\d+)\.(weight|bias)", r"encoder.level_norms.\1.\2"),
    (r"decls\.contrans\.(weight|bias)", r"decoder.dcm.above.resample.\1"),
    (r"decls\.conv_l\.(weight|bias)", r"decoder.dcm.above.conv.\1"),
    (r"decls\.attn\.1\.(weight|bias)", r"decoder.dcm.above.fc.\1"),
    (r"dereg\.down\.(weight|bias)", r"decoder.drm.below.resample.\1"),
    (r"dereg\.conv_l\.(weight|bias)", r"decoder.drm.below.conv.\1"),
    (r"dereg\.attn\.1\.(weight|bias)", r"decoder.drm.below.fc.\1"),
    (r"cross_level\.conv\.(weight|bias)", r"decoder.clff.below.resample.\1"),
    (r"cross_level\.convtrans\.(weight|bias)", r"decoder.clff.above.resample.\1"),
    (_HEAD + r"head\.(\d+)\.conv\.(weight)", r"decoder.\1.convs.\2.\3"),
    (_HEAD + r"norm\.(\d+)\.(weight|bias)", r"decoder.\1.norms.\2.\3"),
    (_HEAD + r"cls_head\.conv\.(weight|bias)", r"decoder.\1.out.\2"),
    (r"reg_head\.head\.(\d+)\.conv\.(weight)", r"decoder.center_head.convs.\1.\2"),
    (r"reg_head\.norm\.(\d+)\.(weight|bias)", r"decoder.center_head.norms.\1.\2"),
    (r"reg_head\.offset_head\.conv\.(weight|bias)", r"decoder.center_head.out.\1"),
    (r"reg_head\.scale\.(\d+)\.scale", r"decoder.center_scales.\1"),
    (r"refineHead\.head\.(\d+)\.conv\.(weight)", r"decoder.refine_head.tower.convs.\1.\2"),
    (r"refineHead\.norm\.(\d+)\.(weight|bias)", r"decoder.refine_head.tower.norms.\1.\2"),
    (r"refineHead\.prob_head\.conv\.(weight|bias)", r"decoder.refine_head.tower.out.\1"),
    (r"refineHead\.s_offset_head\.conv\.(weight|bias)", r"decoder.refine_head.start_offset.\1"),
    (r"refineHead\.e_offset_head\.conv\.(weight|bias)", r"decoder.refine_head.end_offset.\1"),
)
# Their RefineHead builds one Scale per level and never calls it: those tensors have no counterpart.
UNUSED = (r"refineHead\.scale\.\d+\.scale",)
# Ours that no released tensor holds: the running positive count (a plain float in the released code).
NOT_IN_RELEASED = ("loss_normalizer",)
MAX_LISTED = 20  # problems listed in one error message


def our_key(key: str) -> str | None:
    """The name of ours that the released ``key`` (without ``module.``) maps to; None for an unused tensor.
    Raises KeyError for a key no rule knows."""
    for pattern, template in RULES:
        m = re.fullmatch(pattern, key)
        if m:
            return m.expand(template)
    if any(re.fullmatch(p, key) for p in UNUSED):
        return None
    raise KeyError(key)


def _squeezed(shape: torch.Size) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def map_state(theirs: dict[str, Tensor], model: nn.Module, source: str) -> dict[str, Tensor]:
    """The released state dict ``theirs`` as a state dict of ``model``; every problem is listed in one error."""
    ours = model.state_dict()
    mapped: dict[str, Tensor] = {}
    problems = []
    for key, value in theirs.items():
        try:
            name = our_key(key)
        except KeyError:
            problems.append(f"  {key}: not a tensor of the released CLTDR-GMG model")
            continue
        if name is None:
            continue
        if name not in ours:
            problems.append(f"  {key}: maps to {name}, which this config's model does not have")
        elif _squeezed(value.shape) != _squeezed(ours[name].shape):
            problems.append(
                f"  {key}: shape {tuple(value.shape)} does not fit {name} {tuple(ours[name].shape)} of this config"
            )
        else:
            mapped[name] = value.detach().reshape(ours[name].shape).to(ours[name].dtype)
    for name in ours:
        if name not in mapped and name not in NOT_IN_RELEASED:
            problems.append(f"  {name}: this config's model has it, the checkpoint has no tensor for it")
    if problems:
        more = len(problems) - MAX_LISTED
        shown = problems[:MAX_LISTED] + ([f"  ... and {more} more"] if more > 0 else [])
        raise CheckpointError(
            f"checkpoint {source} does not fit model.variant 'released' of this config "
            f"({len(problems)} problem(s)):\n" + "\n".join(shown)
        )
    for name in NOT_IN_RELEASED:
        if name in ours:
            mapped[name] = ours[name].clone()
    return mapped


def _strip(state: dict[str, Any]) -> dict[str, Tensor]:
    """A state dict without DataParallel's ``module.`` prefix."""
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


class ReleasedCheckpoint(NamedTuple):
    """The parts of a released checkpoint cltdr uses."""

    ema: dict[str, Tensor]  # the EMA weights (their evaluation's)
    raw: dict[str, Tensor]  # the optimiser's weights; the EMA when the file holds none
    epoch: Optional[int]  # the epochs it was trained, when recorded


def read_checkpoint(path: str | Path) -> ReleasedCheckpoint:
    """Read a released ``.pth.tar``: ``{'state_dict_ema': ..., 'state_dict': ...}``, or a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Their best-model files also pickle the mAP (a NumPy scalar): read those in full.
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of weights")
    if "state_dict_ema" in state or "state_dict" in state:
        ema = state.get("state_dict_ema") or state["state_dict"]
        raw = state.get("state_dict") or ema
        epoch = state.get("epoch")
    elif state and all(isinstance(v, Tensor) for v in state.values()):
        ema = raw = state
        epoch = None
    else:
        raise CheckpointError(
            f"checkpoint {path} has no 'state_dict_ema' or 'state_dict' (keys: {sorted(map(str, state))[:8]}); "
            "expected a checkpoint of the released CLTDR-GMG code"
        )
    return ReleasedCheckpoint(_strip(ema), _strip(raw), epoch if isinstance(epoch, int) else None)


def num_classes_of(state: dict[str, Tensor], source: str) -> int:
    """The class count of a released state dict: the width of its classification output."""
    key = "cls_head.cls_head.conv.bias"
    if key not in state:
        raise CheckpointError(f"checkpoint {source} has no {key}: not a released CLTDR-GMG model")
    return int(state[key].numel())
