"""What tests/test_distributed.py runs under torchrun: ``cltdr`` with its arguments, and, with
CLTDR_TEST_KILL_AT=N in the environment, the first process killed (SIGKILL) when it starts its N-th loss."""

from __future__ import annotations

import os
import signal
import sys

from cltdr import cli
from cltdr.model import Detector

if __name__ == "__main__":
    kill_at = int(os.environ.get("CLTDR_TEST_KILL_AT", 0))
    if kill_at and os.environ.get("RANK") == "0":
        loss, calls = Detector.loss, [0]

        def killed_loss(self, *args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return loss(self, *args, **kwargs)

        Detector.loss = killed_loss  # type: ignore[method-assign]
    sys.exit(cli.main(sys.argv[1:]))
