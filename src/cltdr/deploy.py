"""Deploying a trained run: its network as a TorchScript or ONNX file (``cltdr export-model``), and such a file
run in place of the model (:class:`ExportedModel`, ``Localizer.from_export``).

Shapes: B batch, C input channels, T input steps (any multiple of the pyramid divisor), P points over all levels,
K classes.
The file holds the network of :meth:`Detector.predict_dense`, up to the pre-NMS prediction: inputs ``features``
(B, C, T) float32 and ``mask`` (B, T) bool (True on valid steps, so a video padded to a multiple of the divisor
gives the output of the video alone), outputs ``scores`` (B, P, K) refined probabilities, ``segments``
(B, P, K, 2) class-wise [start, end] in grid steps and ``valid`` (B, P) bool. It also holds the run's config and
class names (TorchScript: an extra file ``cltdr.json``; ONNX: metadata key ``cltdr``), so the file alone is
enough to detect. Candidates, Soft-NMS and the conversion to seconds stay in Python: :class:`ExportedModel` has
the ``divisor`` / ``predict`` of a Detector, so the normal inference path (``cltdr.inference.runner``) runs it.
The GMG encoder's FFT runs in the file as matrix products (``cltdr.ops.dft``). An export is checked before it is
kept: the file's outputs must equal the model's on two lengths.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from cltdr.config import Config, config_from_dict
from cltdr.errors import CheckpointError, CltdrError
from cltdr.model.detector import Detector
from cltdr.model.outputs import VideoPrediction, level_lengths, split_videos
from cltdr.model.released import ReleasedDetector

FORMATS = ("torchscript", "onnx")
EXPORT_FORMAT = "cltdr-export-v1"
ONNX_OPSET = 17  # the ops the graph needs (MatMul, Cos, Sin, Mod, Conv, ...) are all in opset 17
META_KEY = "cltdr"  # ONNX metadata key; TorchScript extra file META_KEY + ".json"
INPUTS, OUTPUTS = ("features", "mask"), ("scores", "segments", "valid")
VERIFY_ATOL, VERIFY_RTOL = 1e-4, 1e-5  # an export whose outputs differ from the model's by more is refused


class PreNMSNetwork(nn.Module):
    """What is exported: a detector's :meth:`~cltdr.model.detector.Detector.predict_dense`."""

    def __init__(self, detector: Detector):
        super().__init__()
        self.detector = detector

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.detector.predict_dense(features, mask)


@dataclass(frozen=True)
class ExportInfo:
    """What an exported file says about itself (its metadata)."""

    config: Config  # the run's config, class names filled in
    num_levels: int  # L: the output has sum ceil(T / 2^l) points
    divisor: int  # T must be a multiple of it
    source: str  # the checkpoint it was exported from

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": EXPORT_FORMAT,
                "config": self.config.model_dump(mode="json"),
                "num_levels": self.num_levels,
                "divisor": self.divisor,
                "source": self.source,
            }
        )

    @staticmethod
    def from_json(text: str, where: str) -> ExportInfo:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
            raise CheckpointError(f"{where} was not written by `cltdr export-model` (no {EXPORT_FORMAT} metadata)")
        config = config_from_dict(data["config"], f"{where} (its config)")
        return ExportInfo(config, int(data["num_levels"]), int(data["divisor"]), str(data["source"]))


# --------------------------------------------------------------------------------------------------- export
def export_model(
    run_dir: str | Path,
    fmt: str,
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    weights: str = "ema",
) -> Path:
    """Write a run's network (on the CPU, fp32) as ``fmt`` ('torchscript' or 'onnx') to ``out``, checked against
    the model on two lengths; returns ``out``."""
    from cltdr.runs import RunDir, load_trained_model

    if fmt not in FORMATS:
        raise CltdrError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    cfg, model, _ = load_trained_model(run_dir, checkpoint, "cpu", weights)
    return export_network(model, cfg, fmt, out, source=str(RunDir(run_dir).checkpoint(checkpoint)))


def export_network(model: Detector, cfg: Config, fmt: str, out: str | Path, *, source: str = "") -> Path:
    """:func:`export_model` of a model in memory (``cfg``: its config, written into the file); the model is
    moved to the CPU in fp32."""
    from cltdr.data.build import class_names

    if fmt not in FORMATS:
        raise CltdrError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    divisor = input_multiple(model, cfg)
    cfg = cfg.model_copy(deep=True)
    cfg.dataset.class_names = class_names(cfg)
    model = model.cpu().float().eval()
    info = ExportInfo(cfg, model.num_levels, divisor, source)
    network = PreNMSNetwork(model).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    example = example_input(cfg.dataset.input_dim, divisor, 4 * divisor)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it records as constants
        if fmt == "torchscript":
            traced = torch.jit.trace(network, example, check_trace=False)
            torch.jit.save(traced, str(out), _extra_files={META_KEY + ".json": info.to_json()})
        else:
            _export_onnx(network, example, out, info)
    verify_export(network, load_exported(out), divisor, cfg.dataset.input_dim)
    return out


def input_multiple(model: Detector, cfg: Config) -> int:
    """What an exported file's input length T must be a multiple of: the coarsest stride, or the released
    variant's canvas multiple. The released variant exports with ``padding: divisor`` only (a video's canvas is
    then its length rounded up, which the padded input holds; the 'released' canvas of max_seq_len steps would
    need inputs of that length) and without position embeddings (their table is resized per canvas length)."""
    if not isinstance(model, ReleasedDetector):
        return model.divisor
    r = cfg.model.released
    if r.padding != "divisor" or r.abs_position:
        raise CltdrError(
            f"model.variant 'released' exports with model.released.padding 'divisor' and abs_position false; this "
            f"run has padding {r.padding!r} and abs_position {r.abs_position} (the canvas of max_seq_len steps and "
            "the resized position table depend on each video's length): run it with `cltdr detect`"
        )
    return model.canvas_multiple


def _export_onnx(network: nn.Module, example: tuple[Tensor, Tensor], out: Path, info: ExportInfo) -> None:
    try:
        import onnx
    except ImportError:
        raise CltdrError("ONNX export needs the onnx package: pip install 'cltdr[export]'") from None
    torch.onnx.export(
        network,
        example,
        str(out),
        dynamo=False,  # the TorchScript-based exporter: the same trace as the TorchScript file
        input_names=list(INPUTS),
        output_names=list(OUTPUTS),
        opset_version=ONNX_OPSET,
        dynamic_axes={
            "features": {0: "B", 2: "T"},
            "mask": {0: "B", 1: "T"},
            "scores": {0: "B", 1: "P"},
            "segments": {0: "B", 1: "P"},
            "valid": {0: "B", 1: "P"},
        },
    )
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, info.to_json()
    onnx.save(proto, str(out))


def example_input(input_dim: int, divisor: int, num_steps: int, valid: int | None = None) -> tuple[Tensor, Tensor]:
    """Random features (1, C, T) and a mask valid on the first ``valid`` steps (default: T minus half a divisor),
    zero beyond them, as a padded video is."""
    valid = num_steps - divisor // 2 if valid is None else valid
    mask = torch.arange(num_steps)[None] < valid  # (1, T)
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(1, input_dim, num_steps, generator=generator) * mask[:, None]
    return feats, mask


def verify_export(network: nn.Module, exported: ExportedModel, divisor: int, input_dim: int) -> None:
    """Refuse an export whose outputs differ from the network's by more than :data:`VERIFY_ATOL` plus
    :data:`VERIFY_RTOL` of the output's largest value, on two lengths other than the traced one (a shape the
    trace fixed by mistake shows up here). The relative part is fp32 rounding: segments in grid steps reach
    hundreds of steps even on short inputs (a random-weight THUMOS14 model: 317, off by 4e-4 between torch.fft
    and its DFT form in eager PyTorch already)."""
    for steps in (3 * divisor, 6 * divisor):
        feats, mask = example_input(input_dim, divisor, steps, valid=steps - divisor // 2 - 1)
        with torch.no_grad():
            expected = network(feats, mask)
        got = exported.run(feats, mask)
        for name, a, b in zip(OUTPUTS, expected, got):
            a, b = a.float(), b.float()
            scale = a.abs().max().item() if a.numel() else 0.0
            diff = (a - b).abs().max().item() if a.shape == b.shape else float("inf")
            if not diff <= VERIFY_ATOL + VERIFY_RTOL * scale:
                raise CltdrError(
                    f"the exported {exported.kind} file {exported.path} does not reproduce the model at T={steps}: "
                    f"output {name!r} of shape {tuple(b.shape)} (expected {tuple(a.shape)}) differs by {diff:.3g}, "
                    f"more than {VERIFY_ATOL:g} + {VERIFY_RTOL:g} x its largest value {scale:.3g}; the model holds "
                    "an operation the export cannot follow"
                )


# ---------------------------------------------------------------------------------------------- run a file
class ExportedModel:
    """An exported file standing in for a Detector at inference: ``divisor``, ``num_levels``, ``predict``.

    TorchScript files run with torch (``torch.jit.load``), ONNX files with ONNX Runtime (CPU unless
    ``providers`` say otherwise). Inference holds no state, so one instance serves several threads.
    """

    def __init__(self, path: Path, kind: str, info: ExportInfo, run: Callable[[Tensor, Tensor], tuple[Tensor, ...]]):
        self.path, self.kind, self.info = path, kind, info
        self._run = run

    @property
    def divisor(self) -> int:
        return self.info.divisor

    @property
    def num_levels(self) -> int:
        return self.info.num_levels

    def eval(self) -> ExportedModel:  # the Detector interface of the inference path; always in inference mode
        return self

    def run(self, feats: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The file's outputs (scores, segments, valid) for features (B, C, T) and mask (B, T), on the CPU."""
        if feats.shape[-1] % self.divisor:
            raise ValueError(f"input length {feats.shape[-1]} is not a multiple of {self.divisor}")
        scores, segments, valid = self._run(feats.float().cpu(), mask.bool().cpu())
        return scores, segments, valid

    def predict(self, feats: Tensor, mask: Tensor) -> list[VideoPrediction]:
        """Per video, as :meth:`Detector.predict`: scores and class-wise segments of each level's valid steps."""
        return split_videos(*self.run(feats, mask), level_lengths(feats.shape[-1], self.num_levels))


def load_exported(
    path: str | os.PathLike, *, providers: list[str] | None = None, threads: int | None = None
) -> ExportedModel:
    """Open a file written by :func:`export_model`; its kind follows from its content (a TorchScript archive is
    a zip file), not its name. ``threads``: ONNX Runtime's intra-op threads (default: its own choice; a
    TorchScript file runs on torch's threads, ``torch.set_num_threads``)."""
    path = Path(path)
    if not path.is_file():
        raise CltdrError(f"exported model {path} does not exist")
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    return _load_torchscript(path) if is_zip else _load_onnx(path, providers, threads)


def _load_torchscript(path: Path) -> ExportedModel:
    extra = {META_KEY + ".json": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; it still runs
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:  # torch raises several types for foreign files
        raise CheckpointError(f"{path} cannot be read as TorchScript ({type(e).__name__}: {e})") from None
    info = ExportInfo.from_json(extra[META_KEY + ".json"], str(path))

    def run(feats: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        with torch.no_grad():
            return tuple(module(feats, mask))

    return ExportedModel(path, "torchscript", info, run)


def _load_onnx(path: Path, providers: list[str] | None, threads: int | None) -> ExportedModel:
    try:
        import onnxruntime as ort
    except ImportError:
        raise CltdrError(f"running {path} needs ONNX Runtime: pip install 'cltdr[export]'") from None
    try:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for foreign files
        raise CheckpointError(f"{path} cannot be read as an ONNX model ({type(e).__name__}: {e})") from None
    meta: dict[str, Any] = session.get_modelmeta().custom_metadata_map
    info = ExportInfo.from_json(meta.get(META_KEY, ""), str(path))

    def run(feats: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        outputs = session.run(list(OUTPUTS), {"features": feats.numpy(), "mask": mask.numpy()})
        return tuple(torch.from_numpy(o) for o in outputs)

    return ExportedModel(path, "onnx", info, run)
