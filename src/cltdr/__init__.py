"""cltdr: temporal action localization with CLTDR-GMG, in pure PyTorch.

The package follows the pipeline: ``data`` (formats, datasets, synthetic benchmark) -> ``model`` (encoder,
decoder heads, label assignment, losses) -> ``inference`` (decoding, Soft-NMS) -> ``evaluation`` (mAP),
with ``training`` and the ``cli`` around them.
"""

__version__ = "0.1.0"
