"""Run logs: one JSON object per line (log.jsonl) and TensorBoard-compatible scalars (tb/)."""

from __future__ import annotations

import json
import time

from cltdr.runs import RunDir


class RunLogger:
    def __init__(self, run: RunDir, tensorboard: bool = True):
        self.path = run.log
        self.writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter  # TensorBoard event files, without TensorFlow

            self.writer = SummaryWriter(str(run.tensorboard))

    def log(self, step: int, **values) -> None:
        record = {"time": round(time.time(), 3), "step": step, **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
