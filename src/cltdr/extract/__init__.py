"""From video files to clip features (``cltdr extract``): decode, cut clips on the feature grid, run a backbone.

    decode.py      PyAV decoding, resampled to a target frame rate by timestamps (variable frame rates too)
    clips.py       the grid of clips: feature t covers frames [t * stride, t * stride + num_frames)
    backbones.py   the backbone interface, its registry and the weights it loads (file, random, pretrained)
    tiny3d.py      a small pure-PyTorch 3D-conv backbone (demos and tests)
    tvmodels.py    torchvision's video models (optional: torchvision)
    videomae.py    a Hugging Face VideoMAE model from a local directory (optional: transformers)
    card.py        the feature card: how a folder of features was made, compared before features are mixed
    extract.py     the driver: one video -> (T, C) features; a list of videos -> a folder, resumable
    encode.py      writing videos with PyAV (the demo's and the tests' synthetic videos)

PyAV (``pip install 'cltdr[video]'``) is imported only when a video is read or written.
"""
