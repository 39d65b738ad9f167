"""``tiny3d``: a small pure-PyTorch 3D-conv backbone (about 60 k parameters), for demos and tests.

Dimension letters: B clips, N frames of a clip, h x w a preprocessed frame (64 x 64), C = 64 channels.

It has no published weights: ``--weights random`` (the default) draws them from the fixed seed, or ``--weights
PATH`` loads a state dict (of a network trained elsewhere). Random 3D convolutions with ReLU and average pooling
still keep colour, texture and some motion statistics, which is what the demo's synthetic actions differ in.
"""

from __future__ import annotations

import torch
from torch import nn

from cltdr.errors import CheckpointError
from cltdr.extract.backbones import (
    Backbone,
    BackboneSpec,
    Resize,
    load_state,
    random_weights,
    read_state_file,
    register_backbone,
    seeded,
)

WIDTH = 16
SIZE = (64, 64)
NUM_FRAMES = 8  # the default clip length


class Tiny3D(nn.Module):
    """Three strided 3D convs (3 -> 16 -> 32 -> 64 channels) and a global average pool."""

    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv3d(3, width, 3, stride=(1, 2, 2), padding=1),
            nn.ReLU(),
            nn.Conv3d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv3d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.dim = 4 * width

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.layers(clips).mean(dim=(2, 3, 4))  # (B, C, N', h', w') -> (B, C)


def build(weights: str, num_frames: int | None) -> Backbone:
    with seeded():
        network = Tiny3D()
    if weights == "random":
        info = random_weights(network)
    elif weights == "pretrained":
        raise CheckpointError("backbone tiny3d has no published weights: pass --weights random or a state-dict file")
    else:
        state, info = read_state_file(weights, "tiny3d")
        load_state(network, state, str(weights), "tiny3d")
    preprocess = Resize(SIZE, None, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    return Backbone("tiny3d", network, preprocess, network.dim, info, num_frames or NUM_FRAMES)


register_backbone(
    "tiny3d",
    BackboneSpec(
        build,
        needs="nothing (pure PyTorch); random weights unless --weights PATH",
        default_weights="random",
        summary="small 3D-conv network, 64 channels, 64 x 64 frames",
    ),
)
