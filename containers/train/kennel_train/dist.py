"""Who this process is (rank, world, device), and how `train` starts torchrun for several processes."""

import logging
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as torch_dist

from kennel_train.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def single(cls) -> "DistContext":
        device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        return cls(rank=0, world_size=1, local_rank=0, local_world_size=1, device=device)

    @classmethod
    def from_torchrun(cls, env: dict[str, str]) -> "DistContext":
        """Joins the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
        MASTER_ADDR/PORT)."""
        local_rank = int(env["LOCAL_RANK"])
        if torch.cuda.is_available():
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
            backend = "nccl"
        else:
            device = torch.device("cpu")
            backend = "gloo"
        torch_dist.init_process_group(backend=backend)
        return cls(
            rank=torch_dist.get_rank(),
            world_size=torch_dist.get_world_size(),
            local_rank=local_rank,
            local_world_size=int(env["LOCAL_WORLD_SIZE"]),
            device=device,
        )

    def close(self) -> None:
        if self.distributed:
            torch_dist.destroy_process_group()


def processes_per_host(config: TrainConfig) -> int:
    return config.nproc_per_node or max(torch.cuda.device_count(), 1)


def needs_launcher(config: TrainConfig) -> bool:
    return processes_per_host(config) * max(len(config.hosts), 1) > 1


def resolve_host(host: str, timeout_s: float = 300.0) -> str:
    """SageMaker warns that peers' names may not resolve at once: retry until they do."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError as err:
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot resolve host {host!r} after {timeout_s:.0f} s: {err}") from err
            log.info("waiting for %s to resolve (%s)", host, err)
            time.sleep(2)


def torchrun_command(config: TrainConfig, config_file: Path) -> list[str]:
    hosts = list(config.hosts) or ["localhost"]
    current = config.current_host or hosts[0]
    if current not in hosts:
        raise RuntimeError(f"current host {current!r} is not among the hosts {hosts}")
    # One host talks to itself: its name in resourceconfig.json need not resolve outside SageMaker.
    master = hosts[0] if len(hosts) > 1 else "127.0.0.1"
    if len(hosts) > 1:
        resolve_host(master)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={len(hosts)}",
        f"--nproc-per-node={processes_per_host(config)}",
        f"--node-rank={hosts.index(current)}",
        f"--master-addr={master}",
        f"--master-port={config.master_port}",
        "-m",
        "kennel_train.worker",
        str(config_file),
    ]


def launch(config: TrainConfig, config_file: Path) -> int:
    """Runs torchrun as a child and returns its exit code. SIGTERM to `train` (docker stop, a spot
    interruption) is passed on, so the workers can checkpoint before they exit."""
    config_file.write_text(config.to_json())
    command = torchrun_command(config, config_file)
    log.info("launching: %s", " ".join(command))
    child = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    return child.wait()
