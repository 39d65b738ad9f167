"""``cltdr export-model`` and exported files: the DFT form of the FFT against ``torch.fft``, TorchScript and ONNX
Runtime outputs against PyTorch's on two lengths, the same final detections, and clear errors.

The ONNX tests need onnxruntime and onnx (``pip install 'cltdr[export]'``, part of the ``test`` extra); without
them they skip.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from cltdr import Localizer, cli
from cltdr.deploy import load_exported
from cltdr.errors import CheckpointError
from cltdr.model.gmg import GlobalFilter
from cltdr.ops.dft import dft_bases, irdft, rdft
from cltdr.runs import load_trained_model

HAVE_ONNX = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnxruntime / onnx not installed (pip install 'cltdr[export]')")
FORMATS = ["torchscript", pytest.param("onnx", marks=needs_onnx)]
ATOL = 1e-4


# ------------------------------------------------------------------------------------------ the DFT op
@pytest.mark.parametrize("num_steps, lengths", [(64, [64, 63, 33, 2, 1]), (96, [96, 50, 17])])
def test_dft_equals_torch_fft_over_each_videos_valid_steps(num_steps, lengths):
    torch.manual_seed(0)
    n = torch.tensor(lengths)
    x = torch.randn(len(lengths), 5, num_steps) * (torch.arange(num_steps)[None] < n[:, None])[:, None]
    bases = dft_bases(n, num_steps)
    real, imag = rdft(x, bases)
    spec = torch.complex(torch.randn_like(real), torch.randn_like(imag)) * bases.bins[:, None]
    back = irdft(spec.real, spec.imag, bases)
    for b, length in enumerate(lengths):
        bins = length // 2 + 1
        ref = torch.fft.rfft(x[b, :, :length], norm="ortho")
        assert torch.allclose(torch.complex(real[b, :, :bins], imag[b, :, :bins]), ref, atol=1e-5)
        assert not real[b, :, bins:].any() and not imag[b, :, bins:].any()
        # irfft ignores the imaginary parts of bin 0 and n / 2; so does the DFT form
        ref_back = torch.fft.irfft(spec[b, :, :bins], n=length, norm="ortho")
        assert torch.allclose(back[b, :, :length], ref_back, atol=1e-5)
        assert not back[b, :, length:].any()


def test_global_filter_dft_form_equals_its_fft_form():
    torch.manual_seed(0)
    g = GlobalFilter(8)
    mask = torch.arange(80)[None] < torch.tensor([80, 47, 3])[:, None]
    x = torch.randn(3, 8, 80) * mask[:, None]
    assert torch.allclose(g(x, mask), g.forward_dft(x, mask), atol=1e-5)


# ------------------------------------------------------------------------------------------ exported files
@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> dict[str, Path]:
    """The tiny run exported in each available format (exporting checks the file on two lengths itself)."""
    root = tmp_path_factory.mktemp("exported")
    files = {}
    for fmt in ("torchscript", "onnx") if HAVE_ONNX else ("torchscript",):
        files[fmt] = root / f"model.{'pt' if fmt == 'torchscript' else 'onnx'}"
        assert cli.main(["export-model", str(trained_run), "--format", fmt, "--out", str(files[fmt])]) == 0
    return files


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("num_steps, valid", [(64, 61), (256, 256)])
def test_exported_outputs_equal_pytorchs(exported, trained_run, fmt, num_steps, valid):
    _, model, _ = load_trained_model(trained_run, device="cpu")
    mask = torch.arange(num_steps)[None] < valid
    feats = torch.randn(1, model.encoder.projection.convs[0].in_channels, num_steps) * mask[:, None]
    with torch.no_grad():
        expected = model.predict_dense(feats, mask)
    got = load_exported(exported[fmt]).run(feats, mask)
    for a, b in zip(expected, got):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert (a.float() - b.float()).abs().max() <= ATOL
    assert torch.equal(expected[2], got[2])  # the valid points


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_file_gives_the_same_detections(exported, trained_run, tiny_data, fmt):
    feats = np.load(tiny_data.feat_dir / "video_testing_00002.npy")
    eager = Localizer.from_run(trained_run, device="cpu")(feats, fps=30)
    deployed = Localizer.from_export(exported[fmt])(feats, fps=30)  # config and class names from the file
    assert len(eager) > 0 and len(eager) == len(deployed)
    assert [d.label for d in eager] == [d.label for d in deployed]
    for a, b in zip(eager, deployed):
        assert abs(a.score - b.score) <= ATOL and abs(a.start - b.start) <= 1e-3 and abs(a.end - b.end) <= 1e-3
    with_run = Localizer.from_export(exported[fmt], run_dir=trained_run, preset="deployment")(feats, fps=30)
    assert len(with_run) < len(deployed)  # the deployment preset keeps fewer


def test_a_file_that_is_no_export_is_refused(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(tmp_path / "plain.pt"))
    with pytest.raises(CheckpointError, match="not written by `cltdr export-model`"):
        load_exported(tmp_path / "plain.pt")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError if HAVE_ONNX else Exception, match="junk.onnx"):
        load_exported(tmp_path / "junk.onnx")


def test_export_model_errors_exit_2(tmp_path, trained_run, capsys):
    (tmp_path / "config.yaml").write_text((trained_run / "config.yaml").read_text())  # a run never trained
    assert cli.main(["export-model", str(tmp_path), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 2
    assert "checkpoint" in capsys.readouterr().err and not (tmp_path / "m.pt").exists()
    with pytest.raises(SystemExit) as stop:  # argparse: an unknown format
        cli.main(["export-model", str(trained_run), "--format", "tflite", "--out", str(tmp_path / "m")])
    assert stop.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    from cltdr.deploy import export_model
    from cltdr.errors import CltdrError

    with pytest.raises(CltdrError, match="unknown export format 'tflite'; expected one of torchscript, onnx"):
        export_model(trained_run, "tflite", tmp_path / "m")


# ------------------------------------------------------------------------------------- the released variant
def _released(tmp_path, **released) -> tuple:
    from cltdr.config import config_from_dict
    from cltdr.model import build_detector

    model = {"variant": "released", "embed_dim": 16, "head_dim": 16, "ffn_dim": 24, "num_levels": 4, "num_bins": 4}
    cfg = config_from_dict(
        {
            "dataset": {
                "annotation_file": "a.json",
                "feat_dir": "f",
                "input_dim": 8,
                "max_seq_len": 64,
                "class_names": ["a", "b", "c"],
            },
            "model": {**model, "released": released},
        }
    )
    torch.manual_seed(0)
    detector = build_detector(cfg, 3).eval()
    with torch.no_grad():  # random gates and scales: every branch counts in the comparison
        for name, p in detector.named_parameters():
            if "encoder.stem" in name or "encoder.branch" in name:
                p.normal_(0, 0.3)
    return cfg, detector


@pytest.mark.parametrize("fmt", FORMATS)
def test_released_variant_exports_with_divisor_padding(tmp_path, fmt):
    """model.variant 'released' with padding 'divisor': one graph for every length and a batch of different
    lengths, each video computed on its own canvas (its length rounded up), as in eager PyTorch."""
    from cltdr.deploy import export_network

    cfg, detector = _released(tmp_path, padding="divisor", local_kernel=3)
    out = export_network(detector, cfg, fmt, tmp_path / ("m.pt" if fmt == "torchscript" else "m.onnx"))
    exported = load_exported(out)
    assert exported.divisor == 24  # 2^(L-1) x local_kernel, the released canvas multiple
    for lengths in ([96, 71, 30], [48, 48, 5]):  # the trace recorded no length
        mask = torch.arange(96)[None] < torch.tensor(lengths)[:, None]
        feats = torch.randn(3, 8, 96) * mask[:, None]
        with torch.no_grad():
            expected = detector.predict_dense(feats, mask)
        got = exported.run(feats, mask)
        for a, b in zip(expected[:2], got[:2]):
            assert (a - b).abs().max() <= ATOL * max(1.0, a.abs().max().item())
        assert torch.equal(expected[2], got[2])


def test_released_variant_export_refuses_the_fixed_canvas(tmp_path):
    from cltdr.deploy import export_network
    from cltdr.errors import CltdrError

    cfg, detector = _released(tmp_path)  # padding 'released': short videos on max_seq_len steps
    with pytest.raises(CltdrError, match="padding 'divisor'.*padding 'released'"):
        export_network(detector, cfg, "torchscript", tmp_path / "m.pt")
