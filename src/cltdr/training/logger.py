"""Run logs: one JSON object per line (log.jsonl) and TensorBoard-compatible scalars (tb/).

Every record holds the optimiser ``step`` and the 1-based ``epoch`` it belongs to: an iteration's record the epoch
it runs in, an epoch's summary the epoch it ends (logged at the step the next epoch starts with). A resumed run
continues the log of its checkpoint: what the lost partial epoch after it logged is dropped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cltdr.runs import RunDir
from cltdr.utils.io import atomic_write_text


def truncate_log(path: Path, epoch: int, step: int) -> list[dict]:
    """Keep the records of ``path`` up to a checkpoint's completed ``epoch`` and ``step`` (rewritten atomically;
    a line torn by a kill is dropped too); the records kept."""
    kept = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("epoch", 0) <= epoch and record.get("step", 0) <= step:
            kept.append(record)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


class RunLogger:
    """``resume``: (epoch, step) of the checkpoint a resumed run continues from; None: a new run, whose log starts
    empty (a run killed before its first checkpoint leaves one behind)."""

    def __init__(self, run: RunDir, tensorboard: bool = True, resume: tuple[int, int] | None = None):
        self.path = run.log
        epoch, step = resume or (0, 0)
        kept = truncate_log(self.path, epoch, step)
        self.writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter  # TensorBoard event files, without TensorFlow

            # TensorBoard hides the earlier files' events from purge_step on: those of the lost partial epoch
            # (a new run: all of them), and the summary of the resumed epoch, logged at that step, written again.
            # The file name holds the step: otherwise a writer started in the same second replaces the file.
            self.writer = SummaryWriter(str(run.tensorboard), purge_step=step, filename_suffix=f".step{step}")
            for record in kept:
                if record["step"] >= step:
                    self._scalars(record["step"], record)

    def log(self, step: int, **values) -> None:
        record = {"time": round(time.time(), 3), "step": step, **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._scalars(step, values)

    def _scalars(self, step: int, values: dict) -> None:
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step", "time"):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
