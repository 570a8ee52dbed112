"""A two-rank job in which rank 1 stops responding: rank 0's next collective must time out.

Run by ``tests/integration/test_distributed_training.py`` under torchrun; the job's timeout
(seconds) is the first argument.
"""

from __future__ import annotations

import sys
import time

from models.runtime import distributed

if __name__ == "__main__":
    config = distributed.DistributedConfig(world_size=2, timeout_s=float(sys.argv[1]))
    dist = distributed.init_process(config)
    dist.mean({"ready": 1.0})  # both ranks are up
    if dist.rank == 1:
        time.sleep(3600)  # hangs without dying, as a wedged GPU or a stuck pod would
    dist.mean({"loss": 1.0})  # rank 0 waits here for rank 1
    distributed.teardown()
