"""The backbones behind ``--backbone``: torchvision's video models (skipped where torchvision cannot be imported
beside this torch), the Hugging Face VideoMAE directory (skipped without transformers), and the weights they
load: random from the fixed seed, a state-dict file, pretrained from torch's cache (offline: a clear error)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cltdr import cli
from cltdr.errors import CheckpointError, ConfigError
from cltdr.extract.backbones import backbone_names, build_backbone, sha256_file
from cltdr.extract.card import CARD_NAME, read_card
from cltdr.extract.extract import ExtractSettings, extract_video
from videos import moving_video

TORCHVISION = ("r3d_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")


def _torchvision_imports() -> bool:
    try:
        import torchvision.models.video  # noqa: F401
    except Exception:  # missing, or a build for another torch ("operator torchvision::nms does not exist")
        return False
    return True


needs_torchvision = pytest.mark.skipif(not _torchvision_imports(), reason="torchvision does not import here")


def test_every_backbone_is_listed():
    assert set(TORCHVISION) | {"tiny3d", "videomae"} <= set(backbone_names())


def test_random_weights_are_the_same_every_time_and_leave_the_callers_random_state():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = build_backbone("tiny3d", "random"), build_backbone("tiny3d", "random")
    assert a.weights.sha256 == b.weights.sha256 and a.weights.seed == 0
    assert torch.equal(torch.rand(1), before)  # building drew nothing from the caller's generator


def test_weights_that_cannot_be_loaded_say_what_to_do(tmp_path):
    with pytest.raises(CheckpointError, match="backbone tiny3d has no published weights: pass --weights random"):
        build_backbone("tiny3d", "pretrained")
    with pytest.raises(CheckpointError, match=f"backbone tiny3d: weights file {tmp_path / 'nope.pt'} does not exist"):
        build_backbone("tiny3d", str(tmp_path / "nope.pt"))
    torch.save({"layers.0.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="do not fit its network"):
        build_backbone("tiny3d", str(tmp_path / "other.pt"))
    with pytest.raises(ConfigError, match="unknown backbone 'c3d'; expected one of"):
        build_backbone("c3d")


@needs_torchvision
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_backbone_uses_its_weights_transforms_and_gives_its_features(name, tmp_path):
    from torchvision.models import get_model_weights

    torch.set_num_threads(1)
    backbone = build_backbone(name, "random")
    transforms = get_model_weights(name).DEFAULT.transforms()
    frames = torch.randint(0, 256, (backbone.num_frames, 36, 48, 3), dtype=torch.uint8)  # (n, H, W, 3)
    x = backbone.preprocess(frames)  # (3, n, h, w), as the weights' transforms prepare a (T, C, H, W) video
    torch.testing.assert_close(x, transforms(frames.permute(0, 3, 1, 2)))
    assert x.shape == (3, backbone.num_frames, *transforms.crop_size)
    with torch.no_grad():
        features = backbone.network(x[None])
    assert features.shape == (1, backbone.dim) and torch.isfinite(features).all()
    described = backbone.preprocess.describe()
    assert described["crop"] == list(transforms.crop_size) and described["mean"] == list(transforms.mean)
    assert (
        backbone.weights.kind == "random" and backbone.weights.sha256 == build_backbone(name, "random").weights.sha256
    )


@needs_torchvision
def test_torchvision_weights_from_a_file_ignore_the_classifier_and_offline_pretrained_weights_are_a_clear_error(
    tmp_path, monkeypatch
):
    from torchvision.models import get_model

    torch.set_num_threads(1)
    trained = get_model("r3d_18", weights=None, num_classes=7)  # e.g. fine-tuned elsewhere, another head
    torch.save(trained.state_dict(), tmp_path / "r3d.pt")
    backbone = build_backbone("r3d_18", str(tmp_path / "r3d.pt"))
    assert backbone.weights.kind == "file" and backbone.weights.sha256 == sha256_file(tmp_path / "r3d.pt")
    torch.testing.assert_close(backbone.network.layer1[0].conv1[0].weight, trained.layer1[0].conv1[0].weight)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))  # nothing cached

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CheckpointError) as err:
        build_backbone("r3d_18", "pretrained")
    msg = str(err.value)
    assert "backbone r3d_18: its pretrained weights R3D_18_Weights.KINETICS400_V1 are not in torch's cache" in msg
    assert str(tmp_path / "empty-cache" / "hub" / "checkpoints") in msg and "--weights random" in msg


@needs_torchvision
def test_torchvision_clip_lengths_are_checked():
    with pytest.raises(ConfigError, match="backbone mvit_v2_s takes clips of exactly 16 frames, not --num-frames 8"):
        build_backbone("mvit_v2_s", "random", 8)
    with pytest.raises(ConfigError, match="backbone s3d takes clips of at least 14 frames"):
        build_backbone("s3d", "random", 8)


def _tiny_videomae(directory):
    """A random VideoMAE of a few thousand parameters (32 x 32 frames, 4 frames a clip), as save_pretrained
    writes it, with its image processor's config."""
    transformers = pytest.importorskip("transformers")
    config = transformers.VideoMAEConfig(
        image_size=32,
        patch_size=16,
        num_channels=3,
        num_frames=4,
        tubelet_size=2,
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    torch.manual_seed(0)
    transformers.VideoMAEModel(config).save_pretrained(directory)
    processor = {
        "image_processor_type": "VideoMAEImageProcessor",
        "size": {"shortest_edge": 32},
        "crop_size": {"height": 32, "width": 32},
        "do_resize": True,
        "do_center_crop": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(processor))
    return transformers


def test_videomae_from_a_local_directory(tmp_path, capsys):
    torch.set_num_threads(1)
    transformers = _tiny_videomae(tmp_path / "videomae")
    video = moving_video(tmp_path / "v.mp4", 2.0, 10.0, 32, 32)
    rc = cli.main(
        [
            "extract",
            str(video),
            "--backbone",
            "videomae",
            "--weights",
            str(tmp_path / "videomae"),
            "--out",
            str(tmp_path / "f"),
            "--fps",
            "10",
            "--stride",
            "2",
            "--quiet",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    card = read_card(tmp_path / "f" / CARD_NAME)
    assert (card.backbone, card.dim, card.num_frames, card.weights.kind) == ("videomae", 24, 4, "directory")
    feats = np.load(tmp_path / "f" / "v.npy")
    assert feats.shape == (9, 24)  # floor((20 - 4) / 2) + 1 clips of 2 s at 10 fps

    # clip 0 by hand: the frames as the image processor prepares them (32 x 32 already: rescale and normalise
    # only), through VideoMAEModel.from_pretrained, mean over the tokens
    backbone = build_backbone("videomae", str(tmp_path / "videomae"))
    frames = extract_video(video, backbone, ExtractSettings(10.0, 4, 2), torch.device("cpu")).features
    np.testing.assert_allclose(frames, feats, atol=1e-6)
    from cltdr.extract.decode import VideoReader

    decoded = np.concatenate(list(VideoReader(video, 10.0).chunks()))[:4]  # (4, 32, 32, 3)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = ((decoded / 255.0 - mean) / std).transpose(0, 3, 1, 2)[None]  # (1, N, 3, h, w)
    model = transformers.VideoMAEModel.from_pretrained(tmp_path / "videomae").eval()
    with torch.no_grad():
        want = model(pixel_values=torch.tensor(pixels, dtype=torch.float32)).last_hidden_state.mean(1)[0]
    np.testing.assert_allclose(feats[0], want.numpy(), atol=1e-4)

    with pytest.raises(ConfigError, match="videomae .* takes clips of exactly 4 frames"):
        build_backbone("videomae", str(tmp_path / "videomae"), 16)
