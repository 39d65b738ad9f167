"""Checkpoints: written atomically, checked against the config they are loaded with."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..utils.io import atomic_write

FORMAT = "cltdr-checkpoint-v1"
# Keys whose change makes a checkpoint's weights meaningless for a config (the architecture and its inputs).
ARCHITECTURE_KEYS = ("model", "dataset.input_dim", "dataset.class_names")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    return atomic_write(path, lambda f: f.write(buf.getbuffer()), mode="wb")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a cltdr checkpoint (expected format {FORMAT})")
    return state


def _lookup(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part, {}) if isinstance(tree, dict) else None
    return tree


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    return {prefix: value}


def check_compatible(ckpt_config: dict, config: dict, source: str | Path) -> None:
    """Raise naming every architecture key where the checkpoint's config and ``config`` differ.

    A key the checkpoint does not record was added to the config after it was written: not a difference (the
    run's config.yaml, read by ``run_config``, says what the run trained with; loading the weights says where
    they do not fit).
    """
    diffs = []
    for key in ARCHITECTURE_KEYS:
        a, b = _flatten(_lookup(ckpt_config, key), key), _flatten(_lookup(config, key), key)
        for k in sorted(set(a) | set(b)):
            if k not in a and k in b:
                continue
            if a.get(k) != b.get(k):
                diffs.append(f"  {k}: checkpoint has {a.get(k)!r}, config has {b.get(k)!r}")
    if diffs:
        raise CheckpointError(f"checkpoint {source} was trained with another configuration:\n" + "\n".join(diffs))
