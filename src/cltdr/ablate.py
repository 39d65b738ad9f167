"""Ablation tables: train and test every variant of a small spec, and write one Markdown table.

A spec is a YAML file::

    title: "Table 7: the gate of GMG"           # optional heading of the table
    base: ../configs/thumos14_i3d.yaml          # the config every variant starts from, relative to this file
    set: [train.device=cuda]                    # optional: overrides for every variant (as `cltdr train --set`)
    latency: {videos: 5, length: 2304}          # optional: the latency input (these are the defaults)
    variants:                                   # name -> {dotted key: value}, applied as `--set key=value`
      with_gate: {}
      without_gate: {model.gmg.gate: false}

``cltdr ablate SPEC --out DIR`` trains each variant into ``DIR/runs/<name>`` with the :class:`Trainer`, tests it
on the config's test subset, counts its parameters, times its forward pass, and writes
``DIR/runs/<name>/result.json``; after each variant it rewrites ``DIR/table.md`` (atomically). Running the same
command again skips finished variants and resumes a half-trained one from its last checkpoint. Overrides apply
in the order: the spec's ``set``, the variant's, the command line's ``--set``. Data paths inside the base config
are relative to the working directory, as for ``cltdr train``.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import Config, load_config
from .errors import CltdrError, ConfigError
from .utils.io import atomic_write_json, atomic_write_text

# Keys that may change between sessions of one table without making a finished variant stale.
RUNTIME_KEYS = ("train.device", "train.num_workers", "train.log_every")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class LatencyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    videos: int = Field(5, ge=1, description="Random videos timed (median reported), after one warm-up pass.")
    length: int = Field(2304, ge=1, description="Steps per video (the paper's Table 15 uses 2304).")


class AblationSpec(BaseModel):
    """A table: a base config and named variants of it (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    title: Optional[str] = Field(None, description="Heading of table.md (default: the spec's file name).")
    base: Path = Field(description="Config file every variant starts from, relative to the spec file.")
    set: list[str] = Field([], description="key=value overrides applied to every variant.")
    latency: LatencyOptions = LatencyOptions()
    variants: dict[str, dict[str, Any]] = Field(min_length=1, description="Variant name -> {dotted key: value}.")

    @field_validator("variants")
    @classmethod
    def _check_names(cls, variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, overrides in variants.items():
            if not _NAME.match(name):
                raise ValueError(f"variant name {name!r} must be letters, digits, '_', '.', '-' (it names a folder)")
            for key in overrides:
                if not re.match(r"^[A-Za-z_][\w.]*$", str(key)):
                    raise ValueError(f"variant {name!r}: {key!r} is not a dotted config key (e.g. model.gmg.gate)")
        return variants


def load_spec(path: str | Path) -> AblationSpec:
    """Read and validate a spec; ``base`` comes back resolved against the spec's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ablation spec {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
        spec = AblationSpec.model_validate(data if data is not None else {})
    except yaml.YAMLError as e:
        raise ConfigError(f"ablation spec {path} is not valid YAML: {e}") from None
    except ValidationError as e:
        lines = [f"invalid ablation spec {path}:"]
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            unknown = err["type"] == "extra_forbidden"
            lines.append(f"  unknown key '{key}'" if unknown else f"  key '{key}': {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
    return spec.model_copy(update={"base": Path(os.path.normpath(path.parent / spec.base))})


def format_value(value: Any) -> str:
    """A variant's override value as written after ``--set key=`` (JSON is valid YAML)."""
    return value if isinstance(value, str) else json.dumps(value)


def variant_overrides(spec: AblationSpec, name: str) -> list[str]:
    # JSON-encode values so that strings stay strings when apply_overrides parses them back as YAML.
    return [*spec.set, *(f"{key}={json.dumps(value)}" for key, value in spec.variants[name].items())]


def variant_config(spec: AblationSpec, name: str, overrides: Sequence[str] = ()) -> Config:
    """The base config with the spec's, the variant's and then ``overrides`` applied, validated."""
    try:
        return load_config(spec.base, [*variant_overrides(spec, name), *overrides])
    except ConfigError as e:
        raise ConfigError(f"variant {name!r}: {e}") from None


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_record(cfg: Config) -> dict[str, Any]:
    """The config a result was obtained with, flattened, without the keys that do not change results."""
    return {k: v for k, v in _flatten(cfg.model_dump(mode="json")).items() if k not in RUNTIME_KEYS}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads > 1 else ''})"


@torch.no_grad()
def measure_latency(model, *, input_dim: int, length: int, videos: int, device: torch.device) -> float:
    """Median time in ms of one forward pass (batch 1, no post-processing) over ``videos`` random videos of
    ``length`` steps (padded to the model's divisor), after one warm-up pass."""
    model.eval()
    padded = -(-length // model.divisor) * model.divisor
    mask = (torch.arange(padded) < length)[None].to(device)
    gen = torch.Generator().manual_seed(0)
    inputs = [(torch.randn(1, input_dim, padded, generator=gen) * mask.cpu()).to(device) for _ in range(videos)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model(inputs[0], mask)
    times = []
    for x in inputs:
        sync()
        start = time.perf_counter()
        model(x, mask)
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def finished_result(run_dir: Path, cfg: Config) -> dict | None:
    """The variant's result if it finished with this config; an error if it finished with another."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    old, new = result.get("config", {}), config_record(cfg)
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diffs:
        raise CltdrError(f"{run_dir} holds a result obtained with another config ({'; '.join(diffs[:5])}); "
                         f"delete {run_dir} to run this variant again")
    return result


def run_variant(name: str, cfg: Config, run_dir: Path, spec: AblationSpec, *, progress: bool,
                echo: Callable[[str], None]) -> dict:
    """Train (or resume) one variant, test it, time it; write and return its result."""
    from .inference.runner import evaluate_split
    from .model import count_parameters
    from .training.trainer import Trainer, load_trained_model

    resume = (run_dir / "checkpoints" / "last.pt").exists()
    start = time.perf_counter()
    trainer = Trainer(cfg, run_dir, resume=resume, progress=progress)
    echo(f"[ablate] {name}: " + (f"resuming at epoch {trainer.epoch}/{trainer.total_epochs}" if resume
                                 else f"training {trainer.total_epochs} epochs") + f" in {run_dir}")
    trainer.fit()
    del trainer
    train_s = time.perf_counter() - start
    run_cfg, model, device = load_trained_model(run_dir)
    split = evaluate_split(run_cfg, model, run_cfg.dataset.test_subset, run_cfg.dataset.class_names, device,
                           progress=False)
    fused = getattr(split, "fused", None)  # with external class scores (dataset.fusion), the headline numbers
    metrics = (fused or split).metrics
    atomic_write_json(run_dir / "metrics.json", metrics.to_json())
    atomic_write_json(run_dir / "predictions.json", {"version": "cltdr", "results": (fused or split).results,
                                                     "external_data": {}}, indent=None)
    latency = measure_latency(model, input_dim=run_cfg.dataset.input_dim, length=spec.latency.length,
                              videos=spec.latency.videos, device=device)
    summary = metrics.to_json()
    result = {
        "variant": name, "overrides": spec.variants[name], "subset": run_cfg.dataset.test_subset,
        "mAP": summary["mAP"], "average_mAP": summary["average_mAP"], "fused": fused is not None,
        "parameters": count_parameters(model), "latency_ms": latency, "device": device_name(device),
        "latency_input": [spec.latency.length, run_cfg.dataset.input_dim], "seconds": time.perf_counter() - start,
        "train_seconds": train_s, "config": config_record(cfg),
    }
    atomic_write_json(run_dir / "result.json", result)
    return result


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_table(spec: AblationSpec, spec_path: Path, results: dict[str, dict], failures: dict[str, str]) -> str:
    """The Markdown table: one row per variant in spec order (finished, failed or pending)."""
    keys = sorted({k for r in results.values() for k in r["mAP"]}, key=float)
    devices = sorted({r["device"] for r in results.values()})
    lines = [f"# {spec.title or spec_path.stem}", "",
             f"Spec `{spec_path}`, base config `{spec.base}`. mAP in % on the test subset; Avg is the mean over the "
             "thresholds. Latency: median forward pass (batch 1, no post-processing) over "
             f"{spec.latency.videos} random videos of {spec.latency.length} steps, on "
             f"{', '.join(devices) if devices else '(none yet)'}.", ""]
    header = ["variant", "overrides"] + [f"mAP@{k}" for k in keys] + ["Avg", "params (M)", "latency (ms)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    best = max((r["average_mAP"] for r in results.values()), default=None)
    for name, overrides in spec.variants.items():
        changes = ", ".join(f"`{k}={format_value(v)}`" for k, v in overrides.items()) or "(base)"
        row = [_cell(name), _cell(changes)]
        if name in results:
            r = results[name]
            avg = f"{100 * r['average_mAP']:.2f}"
            row += [f"{100 * r['mAP'][k]:.2f}" if k in r["mAP"] else "-" for k in keys]
            row += [f"**{avg}**" if r["average_mAP"] == best and len(results) > 1 else avg,
                    f"{r['parameters'] / 1e6:.2f}", f"{r['latency_ms']:.1f}"]
        else:
            status = f"failed: {_cell(failures[name].splitlines()[0])}" if name in failures else "pending"
            row += [status] + [""] * (len(keys) + 2)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(spec_path: str | Path, out_dir: str | Path, *, overrides: Sequence[str] = (),
                 only: Sequence[str] | None = None, progress: bool = True,
                 echo: Callable[[str], None] = print) -> Path:
    """Run (or finish) the table of ``spec_path`` into ``out_dir``; returns the path of ``table.md``."""
    spec_path, out_dir = Path(spec_path), Path(out_dir)
    spec = load_spec(spec_path)
    unknown = sorted(set(only or ()) - set(spec.variants))
    if unknown:
        raise ConfigError(f"--only: {unknown} not in {spec_path}; its variants: {list(spec.variants)}")
    # Every variant's config is validated before anything trains: a typo in the last one fails now.
    configs = {name: variant_config(spec, name, overrides) for name in spec.variants}
    table = out_dir / "table.md"
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    for name in spec.variants:
        result = finished_result(out_dir / "runs" / name, configs[name])
        if result is not None:
            results[name] = result
    todo = [n for n in spec.variants if n not in results and (only is None or n in only)]
    echo(f"[ablate] {spec_path}: {len(spec.variants)} variants, {len(results)} finished, {len(todo)} to run")
    for i, name in enumerate(todo, 1):
        echo(f"[ablate] variant {i}/{len(todo)}: {name}")
        try:
            results[name] = run_variant(name, configs[name], out_dir / "runs" / name, spec, progress=progress,
                                        echo=echo)
        except CltdrError as e:
            failures[name] = str(e)
            echo(f"[ablate] {name} failed: {e}")
        else:
            r = results[name]
            echo(f"[ablate] {name}: average mAP {100 * r['average_mAP']:.2f}, {r['parameters'] / 1e6:.2f} M "
                 f"parameters, {r['latency_ms']:.1f} ms, {r['seconds']:.0f} s")
        atomic_write_text(table, format_table(spec, spec_path, results, failures))
    atomic_write_text(table, format_table(spec, spec_path, results, failures))
    if failures:
        raise CltdrError(f"{len(failures)} variant(s) failed: {', '.join(failures)}; the others are in {table}. "
                         "Fix the cause and run the same command again")
    return table
