"""The ``cltdr`` command: one thin module per group of sub-commands, each only parsing and printing.

    train.py       synth, train, demo
    infer.py       test, detect, export-model
    data.py        convert, check
    extract.py     extract (video files -> features)
    evaluate.py    evaluate, diagnose, plot (timeline, scores, pr), report, export
    ablate.py      ablate
    checkpoint.py  import-checkpoint (the authors' released weights)

A new command goes into one of them (or a new module added to ``COMMANDS``) as ``cmd_<name>(args)`` plus its
parser in that module's ``add_commands``; its logic lives below, in the package. User errors
(:class:`~cltdr.errors.CltdrError`) print one clear message and exit with status 2; warnings print as one line
``cltdr <command>: warning: ...`` (no source path); an interrupted training run says how to resume it.
Launched by torchrun (``torchrun --nproc_per_node N -m cltdr train|test ...``), a command leaves the process
group it joined (``cltdr.utils.distributed``) when it ends.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from cltdr.cli import ablate, checkpoint, data, evaluate, extract, infer, train
from cltdr.errors import CltdrError
from cltdr.utils import distributed

COMMANDS = (train, infer, extract, data, evaluate, ablate, checkpoint)  # the modules of this package, in --help order


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cltdr", description="Temporal action localization with CLTDR-GMG.")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"cltdr {args.command}: warning: {message}", file=file or sys.stderr, flush=True)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            args.func(args)
    except CltdrError as e:
        print(f"cltdr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `cltdr synth ... | head`: the reader went away, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        hint = f"; continue with `cltdr train ... --out {args.out} --resume`" if args.command == "train" else ""
        print(f"cltdr {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    finally:
        distributed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
