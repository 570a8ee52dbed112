"""Starting a data-parallel job with torchrun: on this machine, or as one node of several.

torchrun (``python -m torch.distributed.run``) starts the processes, sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous for each, watches them, and when one fails
stops the others and exits non-zero: the launcher turns that into a
:class:`~models.runtime.distributed.DistributedError` with the tail of the job's output.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import deque
from collections.abc import Sequence

from models.runtime.distributed import DistributedConfig, DistributedError

logger = logging.getLogger(__name__)


def torchrun_command(
    module: str,
    args: Sequence[str],
    procs_per_node: int,
    nodes: int = 1,
    node_rank: int | str = 0,
    master_addr: str | None = None,
    master_port: int | str | None = None,
) -> list[str]:
    """The torchrun command line for ``python -m module args``.

    One node: ``--standalone`` (a local rendezvous on a free port). Several: the static
    rendezvous at ``master_addr:master_port`` (node 0's address), with this node's rank.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--max-restarts", "0"]
    if nodes == 1:
        cmd += ["--standalone", "--nnodes", "1"]
    else:
        if not master_addr or master_port is None:
            raise DistributedError(f"{nodes} nodes need the address and port of node 0")
        cmd += [
            "--nnodes", str(nodes), "--node-rank", str(node_rank),
            "--master-addr", master_addr, "--master-port", str(master_port),
        ]  # fmt: skip
    return [*cmd, "--nproc-per-node", str(procs_per_node), "-m", module, *args]


def run_torchrun(
    module: str,
    args: Sequence[str],
    config: DistributedConfig,
    env: dict[str, str] | None = None,
    tail: int = 40,
) -> None:
    """Run ``module`` under torchrun on this machine with ``config.world_size`` processes.

    Each process gets ``cores / world_size`` CPU threads. Output is logged line by line.

    Raises:
        DistributedError: when the job fails (a rank raised, died, or timed out), with the last
            ``tail`` lines of its output.
    """
    if config.nodes != 1:
        raise DistributedError(
            f"distributed.nodes = {config.nodes}: several machines need launcher: kubernetes"
        )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("OMP_NUM_THREADS", str(max(1, (cores or 1) // config.world_size)))
    # the job imports the project's modules: from the repository, wherever it is started
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, child_env.get("PYTHONPATH")]))
    cmd = torchrun_command(module, args, config.world_size)
    logger.info("Starting %d processes: %s", config.world_size, " ".join(cmd))
    last: deque[str] = deque(maxlen=tail)
    with subprocess.Popen(
        cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            last.append(line)
            logger.info("[ddp] %s", line)
        code = proc.wait()
    if code != 0:
        raise DistributedError(
            f"distributed job `{module}` failed (torchrun exit code {code}; timeout "
            f"{config.timeout_s:.0f} s per collective). Last lines:\n" + "\n".join(last)
        )
