"""Ablation tables: train and test every variant of a small spec, and write one Markdown table.

A spec is a YAML file::

    title: "Table 7: the gate of GMG"           # optional heading of the table
    base: ../configs/thumos14_i3d.yaml          # the config every variant starts from, relative to this file
    set: [train.device=cuda]                    # optional: overrides for every variant (as `cltdr train --set`)
    latency: {videos: 5, length: 2304}          # optional: the latency input (these are the defaults)
    seeds: 3                                    # optional: train seeds train.seed, +1, +2 of every variant
    variants:                                   # name -> {dotted key: value}, applied as `--set key=value`
      with_gate: {}
      without_gate: {model.gmg.gate: false}

``cltdr ablate SPEC --out DIR`` trains each variant into ``DIR/runs/<name>`` with the :class:`Trainer`, tests it
on the config's test subset, counts its parameters, times its forward pass, and writes
``DIR/runs/<name>/result.json`` (with several seeds: ``DIR/runs/<name>/seed-<S>/``, and the table shows the
mean +- standard deviation over seeds); after each run it rewrites ``DIR/table.md`` (atomically). Running the same
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

from cltdr.config import Config, load_config
from cltdr.errors import CltdrError, ConfigError
from cltdr.runs import RUN_KEYS_BEFORE, RunDir, flatten, unread_keys
from cltdr.utils.hardware import device_name
from cltdr.utils.io import atomic_write_json, atomic_write_text, read_json

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
    seeds: int = Field(1, ge=1, description="Seeds per variant: train.seed, train.seed + 1, ... (--seeds overrides).")
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


def config_record(cfg: Config) -> dict[str, Any]:
    """The config a result was obtained with, flattened, without the keys that do not change results: the
    runtime ones and the model sections the model does not read (``runs.unread_keys``)."""
    unread = unread_keys(cfg.model.model_dump())
    flat = flatten(cfg.model_dump(mode="json"))
    return {k: v for k, v in flat.items() if k not in RUNTIME_KEYS and not k.startswith(unread)}


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
    path = RunDir(run_dir).result
    if not path.is_file():
        return None
    result = read_json(path, "ablation result")
    new, unread = config_record(cfg), unread_keys(cfg.model.model_dump())
    # Results written before config_record left them out hold the sections the model does not read (at the
    # defaults of their day); a key added since the result was written had the value older runs get (as
    # run_config says; `new` holds no key of an unread section). A different model.variant, encoder or decoder
    # is itself a difference.
    old = {k: v for k, v in result.get("config", {}).items() if not k.startswith(unread)}
    old = {**{k: v for k, v in RUN_KEYS_BEFORE.items() if k in new}, **old}
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diffs:
        raise CltdrError(
            f"{run_dir} holds a result obtained with another config ({'; '.join(diffs[:5])}); "
            f"delete {run_dir} to run this variant again"
        )
    return result


def seed_runs(cfg: Config, run_dir: Path, seeds: int) -> list[tuple[Config, Path]]:
    """The (config, run folder) of each seed: one seed trains in ``run_dir`` itself with the config's seed;
    several train ``train.seed + i`` in ``run_dir/seed-<seed>``."""
    if seeds == 1:
        return [(cfg, run_dir)]
    configs = [
        cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": cfg.train.seed + i})})
        for i in range(seeds)
    ]
    return [(c, RunDir(run_dir).seed(c.train.seed).root) for c in configs]


def train_and_test(cfg: Config, run_dir: Path, *, progress: bool, echo: Callable[[str], None], label: str = ""):
    """Train (or resume) one run, then test its evaluation weights on the test subset and write its
    predictions and metrics beside it (``inference.runner.test_run``). Returns (the headline metrics: fused
    with external class scores when ``dataset.fusion`` is set, the trained model, its device, whether the
    metrics are fused, training seconds)."""
    from cltdr.inference.runner import test_run
    from cltdr.training.trainer import Trainer

    resume = RunDir(run_dir).trained
    start = time.perf_counter()
    trainer = Trainer(cfg, run_dir, resume=resume, progress=progress)
    echo(
        label
        + (
            f"resuming at epoch {trainer.epoch}/{trainer.total_epochs}"
            if resume
            else f"training {trainer.total_epochs} epochs"
        )
        + f" in {run_dir}"
    )
    trainer.fit()
    del trainer
    train_s = time.perf_counter() - start
    tested = test_run(run_dir, progress=False)
    fused = tested.split.fused is not None
    return tested.split.headline.metrics, tested.model, tested.device, fused, train_s


def run_variant(
    name: str, cfg: Config, run_dir: Path, spec: AblationSpec, *, progress: bool, echo: Callable[[str], None]
) -> dict:
    """Train (or resume) one variant with one seed, test it, time it; write and return its result."""
    from cltdr.model import count_parameters

    start = time.perf_counter()
    metrics, model, device, fused, train_s = train_and_test(
        cfg, run_dir, progress=progress, echo=echo, label=f"[ablate] {name}: "
    )
    latency = measure_latency(
        model, input_dim=cfg.dataset.input_dim, length=spec.latency.length, videos=spec.latency.videos, device=device
    )
    summary = metrics.to_json()
    result = {
        "variant": name,
        "overrides": spec.variants[name],
        "seed": cfg.train.seed,
        "subset": cfg.dataset.test_subset,
        "mAP": summary["mAP"],
        "average_mAP": summary["average_mAP"],
        "fused": fused,
        "parameters": count_parameters(model),
        "latency_ms": latency,
        "device": device_name(device),
        "latency_input": [spec.latency.length, cfg.dataset.input_dim],
        "seconds": time.perf_counter() - start,
        "train_seconds": train_s,
        "config": config_record(cfg),
    }
    atomic_write_json(RunDir(run_dir).result, result)
    return result


def mean_std(values: Sequence[float]) -> tuple[float, Optional[float]]:
    """Mean and sample standard deviation (n - 1; None for one value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize_seeds(results: Sequence[dict]) -> dict:
    """Per-seed results (each with 'mAP' {tIoU: AP} and 'average_mAP') -> their mean and std per figure."""
    keys = sorted({k for r in results for k in r["mAP"]}, key=float)
    mean, std = mean_std([r["average_mAP"] for r in results])
    per = {k: mean_std([r["mAP"][k] for r in results if k in r["mAP"]]) for k in keys}
    return {
        "seeds": [r.get("seed") for r in results],
        "average_mAP": mean,
        "average_mAP_std": std,
        "mAP": {k: m for k, (m, _) in per.items()},
        "mAP_std": {k: s for k, (_, s) in per.items()},
        "per_seed": [r["average_mAP"] for r in results],
    }


def format_mean_std(mean: float, std: Optional[float]) -> str:
    """In %: '69.21' for one seed, '69.21 ± 1.30' for several."""
    return f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def format_table(
    spec: AblationSpec, spec_path: Path, results: dict[str, list[dict]], failures: dict[str, str], seeds: int = 1
) -> str:
    """The Markdown table: one row per variant in spec order (finished, failed or pending).

    ``results``: variant -> its finished seeds' results; a variant counts as finished with all ``seeds``.
    """
    done = {name: rs for name, rs in results.items() if len(rs) == seeds}
    summaries = {name: summarize_seeds(rs) for name, rs in done.items()}
    keys = sorted({k for s in summaries.values() for k in s["mAP"]}, key=float)
    devices = sorted({r["device"] for rs in done.values() for r in rs})
    spread = (
        f" Each figure is the mean ± standard deviation (n - 1) over {seeds} training seeds (train.seed, "
        f"+1, ...); std over seeds of Avg."
        if seeds > 1
        else ""
    )
    lines = [
        f"# {spec.title or spec_path.stem}",
        "",
        f"Spec `{spec_path}`, base config `{spec.base}`. mAP in % on the test subset; Avg is the mean over the "
        f"thresholds.{spread} Latency: median forward pass (batch 1, no post-processing) over "
        f"{spec.latency.videos} random videos of {spec.latency.length} steps, on "
        f"{', '.join(devices) if devices else '(none yet)'}.",
        "",
    ]
    header = ["variant", "overrides"] + [f"mAP@{k}" for k in keys] + ["Avg", "params (M)", "latency (ms)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|"]
    best = max((s["average_mAP"] for s in summaries.values()), default=None)
    for name, overrides in spec.variants.items():
        changes = ", ".join(f"`{k}={format_value(v)}`" for k, v in overrides.items()) or "(base)"
        row = [_cell(name), _cell(changes)]
        if name in summaries:
            s, first = summaries[name], done[name][0]
            avg = format_mean_std(s["average_mAP"], s["average_mAP_std"])
            row += [f"{100 * s['mAP'][k]:.2f}" if k in s["mAP"] else "-" for k in keys]
            row += [
                f"**{avg}**" if s["average_mAP"] == best and len(summaries) > 1 else avg,
                f"{first['parameters'] / 1e6:.2f}",
                f"{statistics.median(r['latency_ms'] for r in done[name]):.1f}",
            ]
        else:
            status = (
                f"failed: {_cell(failures[name].splitlines()[0])}"
                if name in failures
                else f"pending ({len(results.get(name, []))}/{seeds} seeds)"
                if seeds > 1
                else "pending"
            )
            row += [status] + [""] * (len(keys) + 2)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(
    spec_path: str | Path,
    out_dir: str | Path,
    *,
    overrides: Sequence[str] = (),
    only: Sequence[str] | None = None,
    progress: bool = True,
    seeds: Optional[int] = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Run (or finish) the table of ``spec_path`` into ``out_dir``; returns the path of ``table.md``.

    ``seeds`` (default: the spec's) trains that many seeds of every variant.
    """
    spec_path, out_dir = Path(spec_path), Path(out_dir)
    spec = load_spec(spec_path)
    seeds = seeds or spec.seeds
    unknown = sorted(set(only or ()) - set(spec.variants))
    if unknown:
        raise ConfigError(f"--only: {unknown} not in {spec_path}; its variants: {list(spec.variants)}")
    # Every variant's config is validated before anything trains: a typo in the last one fails now.
    configs = {name: variant_config(spec, name, overrides) for name in spec.variants}
    table = out_dir / "table.md"
    results: dict[str, list[dict]] = {name: [] for name in spec.variants}
    pending: dict[str, list[tuple[Config, Path]]] = {name: [] for name in spec.variants}
    failures: dict[str, str] = {}
    for name in spec.variants:
        for cfg, run_dir in seed_runs(configs[name], out_dir / "runs" / name, seeds):
            result = finished_result(run_dir, cfg)
            if result is not None:
                results[name].append(result)
            else:
                pending[name].append((cfg, run_dir))
    todo = [n for n in spec.variants if len(results[n]) < seeds and (only is None or n in only)]
    finished = sum(len(rs) == seeds for rs in results.values())
    echo(
        f"[ablate] {spec_path}: {len(spec.variants)} variants x {seeds} seed(s), {finished} finished, "
        f"{len(todo)} to run"
    )
    for i, name in enumerate(todo, 1):
        echo(f"[ablate] variant {i}/{len(todo)}: {name}")
        try:
            for cfg, run_dir in pending[name]:
                results[name].append(run_variant(name, cfg, run_dir, spec, progress=progress, echo=echo))
                atomic_write_text(table, format_table(spec, spec_path, results, failures, seeds))
        except CltdrError as e:
            failures[name] = str(e)
            echo(f"[ablate] {name} failed: {e}")
        else:
            s, r = summarize_seeds(results[name]), results[name][-1]
            echo(
                f"[ablate] {name}: average mAP {format_mean_std(s['average_mAP'], s['average_mAP_std'])}, "
                f"{r['parameters'] / 1e6:.2f} M parameters, {r['latency_ms']:.1f} ms, {r['seconds']:.0f} s"
            )
        atomic_write_text(table, format_table(spec, spec_path, results, failures, seeds))
    atomic_write_text(table, format_table(spec, spec_path, results, failures, seeds))
    if failures:
        raise CltdrError(
            f"{len(failures)} variant(s) failed: {', '.join(failures)}; the others are in {table}. "
            "Fix the cause and run the same command again"
        )
    return table


def train_seeds(
    cfg: Config, out_dir: Path, seeds: int, *, resume: bool, progress: bool, echo: Callable[[str], None] = print
) -> dict:
    """``cltdr train --seeds N``: train and test N seeds into ``out_dir/seed-<S>`` (each with its
    ``result.json``); write ``out_dir/seeds.json`` (per-seed and mean +- std metrics) and return it. With
    ``resume`` a finished seed is kept and a half-trained one continues from its last checkpoint."""
    results = []
    for run_cfg, run_dir in seed_runs(cfg, out_dir, seeds):
        if not resume and RunDir(run_dir).trained:
            raise CltdrError(
                f"{run_dir} already holds a run; pass --resume to continue the seeds in {out_dir} "
                "or choose another --out"
            )
        result = finished_result(run_dir, run_cfg) if resume else None
        if result is None:
            metrics, _, _, _, train_s = train_and_test(
                run_cfg, run_dir, progress=progress, echo=echo, label=f"[seed {run_cfg.train.seed}] "
            )
            summary = metrics.to_json()
            result = {
                "seed": run_cfg.train.seed,
                "subset": run_cfg.dataset.test_subset,
                "mAP": summary["mAP"],
                "average_mAP": summary["average_mAP"],
                "train_seconds": train_s,
                "config": config_record(run_cfg),
            }
            atomic_write_json(RunDir(run_dir).result, result)
        results.append(result)
        echo(
            f"[seed {run_cfg.train.seed}] average mAP {100 * result['average_mAP']:.2f} on "
            f"'{run_cfg.dataset.test_subset}'"
        )
    summary = summarize_seeds(results)
    atomic_write_json(RunDir(out_dir).seeds, summary)
    return summary
