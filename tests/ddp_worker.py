"""One rank of a torchrun started by tests/test_distributed.py: train a config, optionally dying
(as if killed) right after the checkpoint of epoch ``stop_after`` (-1: never).

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py WORKSPACE CONFIG_JSON STOP_AFTER
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from toolkit.artifacts import Workspace
from toolkit.config import TrainConfig
from toolkit.train import train


def main() -> None:
    workspace, config, stop_after = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])

    def die_after_epoch(event: dict) -> None:
        if event.phase == "epoch" and event.epoch == stop_after:
            os._exit(17)  # no clean-up, no flush: a killed process

    train(Workspace.at(workspace), TrainConfig(**config), die_after_epoch)


if __name__ == "__main__":
    main()
