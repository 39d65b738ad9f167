"""A competitor's trained checkpoint on its test subset, written as cltdr predictions (ActivityNet JSON).

    python bench/their_predictions.py CHECKOUT CONFIG CHECKPOINT OUT [--weights ema|raw]

CHECKOUT is a checkout of the authors' released code (github.com/LiQiang0307/CLTDR-GMG) or of TriDet's
(github.com/dingfengshi/TriDet); CONFIG the config file their ``train.py`` trained with (the one
``bench/compare_training.py`` writes); CHECKPOINT a ``.pth.tar`` it saved. ``--weights``: their EMA
(``state_dict_ema``, what their ``eval.py`` loads) or the optimiser's raw weights (``state_dict``).

Only their own test-time code runs: their config loader, their dataset class on the config's ``val_split``, their
model in eval mode, one video at a time as their ``eval.py`` feeds it, with their decoding and Soft-NMS (their
compiled ``nms_1d_cpu`` must be importable; ``compare_training.py`` puts it on the path) and their conversion to
seconds. Nothing is re-implemented, so the file scores what their code detects; ``cltdr evaluate`` then scores it
with the same evaluator as cltdr's own runs. Labels are the names of the annotation file's ``label_id``s (a
class without any annotation is named by its id, which no evaluator counts). Their
``eval.py`` itself cannot run without CUDA (it maps the checkpoint to a GPU and wraps the model in DataParallel).

Exit status 2 with one message when an input is missing or is not what their code expects.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path


def fail(message: str) -> None:
    print(f"their_predictions: {message}", file=sys.stderr)
    sys.exit(2)


def label_names(annotation_file: Path) -> dict[int, str]:
    """label_id -> label over the whole annotation file, as their thumos loader reads it."""
    names: dict[int, str] = {}
    for video in json.loads(annotation_file.read_text())["database"].values():
        for ann in video["annotations"]:
            names.setdefault(int(ann["label_id"]), ann["label"])
    return names


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    p.add_argument("checkout", type=Path, help="their repository")
    p.add_argument("config", type=Path, help="the config their train.py read")
    p.add_argument("checkpoint", type=Path, help="a .pth.tar their train.py wrote")
    p.add_argument("out", type=Path, help="the predictions file to write")
    p.add_argument("--weights", choices=("ema", "raw"), default="ema", help="their EMA (default) or raw weights")
    args = p.parse_args()
    args.checkout, args.config, args.checkpoint, args.out = (
        path.resolve() for path in (args.checkout, args.config, args.checkpoint, args.out)
    )
    for path, what in ((args.checkout / "libs" / "modeling", "a checkout"), (args.config, "a config")):
        if not path.exists():
            fail(f"{path} does not exist: expected {what} of their code")
    if not args.checkpoint.is_file():
        fail(f"{args.checkpoint} is not a file: expected a .pth.tar their train.py wrote")

    import torch

    from cltdr.utils.io import atomic_write_json

    sys.path.insert(0, str(args.checkout))
    os.chdir(args.checkout)  # their configs name some files relative to their repository
    with warnings.catch_warnings():
        # their SGPBlock.forward is decorated with torch.cuda.amp.autocast(enabled=False), deprecated in torch 2.4+
        warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast", category=FutureWarning)
        from libs.core import load_config
        from libs.datasets import make_dataset
        from libs.modeling import make_meta_arch

        cfg = load_config(str(args.config))
        dataset = make_dataset(cfg["dataset_name"], False, cfg["val_split"], **cfg["dataset"])
        model = make_meta_arch(cfg["model_name"], **cfg["model"])
    key = {"ema": "state_dict_ema", "raw": "state_dict"}[args.weights]
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    if key not in state:
        fail(f"{args.checkpoint} holds no {key!r} (keys: {sorted(state)})")
    # their train.py saves the DataParallel wrapper's state: every key starts with "module."
    model.load_state_dict({k.removeprefix("module."): v for k, v in state[key].items()})
    model.eval()

    names = label_names(Path(cfg["dataset"]["json_file"]))
    results: dict[str, list] = {}
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            (out,) = model([item])
            results[out["video_id"]] = [
                {"label": names.get(int(k), f"label_id {int(k)}"), "score": float(s), "segment": [float(a), float(b)]}
                for (a, b), s, k in zip(out["segments"].tolist(), out["scores"].tolist(), out["labels"].tolist())
            ]
    atomic_write_json(args.out, {"version": f"{args.checkout.name} {args.weights}", "results": results}, indent=None)
    print(f"their_predictions: {len(results)} videos, {sum(map(len, results.values()))} detections -> {args.out}")


if __name__ == "__main__":
    main()
