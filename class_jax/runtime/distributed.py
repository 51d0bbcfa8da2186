"""Multi-process start-up: `jax.distributed.initialize` from flags, environment variables or the cluster.

Sources, first found wins per value:
  * flags `--coordinator_address`, `--num_processes`, `--process_id` (`class-jax train|eval|infer|export`);
  * environment `JAX_COORDINATOR_ADDRESS` (read by JAX too), `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`
    (launch/gpu_multihost.sh sets them);
  * JAX's own cluster detection (Cloud TPU VMs and pods, SLURM, Open MPI, Kubernetes) when `--distributed=auto`
    and none of the above is given.
On CPU, collectives between processes go through gloo (`jax_cpu_collectives_implementation`), set before the
backend starts.
"""

import argparse
import dataclasses
import logging
import os
from typing import Optional

import jax

MODES = ("auto", "on", "off")


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How to join a multi-process job.

    Attributes:
      mode: "auto" (initialise when an address or a known cluster is present), "on" (always), "off" (never).
      coordinator_address: host:port of process 0's coordination service.
      num_processes: processes in the job.
      process_id: this process's index.
      cpu_collectives: implementation of CPU cross-process collectives ("gloo" or "mpi").
      initialization_timeout: seconds to wait for every process to join.
    """

    mode: str = "auto"
    coordinator_address: Optional[str] = None
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    cpu_collectives: str = "gloo"
    initialization_timeout: int = 300


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the multi-process flags to a command's parser."""
    group = parser.add_argument_group("multi-process")
    group.add_argument("--distributed", choices=MODES, default="auto",
                       help="join a multi-process job: auto (when configured or on a detected cluster), on, off")
    group.add_argument("--coordinator_address", default=None, help="host:port of process 0 (JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num_processes", type=int, default=None, help="processes in the job (JAX_NUM_PROCESSES)")
    group.add_argument("--process_id", type=int, default=None, help="this process's index (JAX_PROCESS_ID)")


def config_from_args(args: argparse.Namespace) -> DistributedConfig:
    """Merges flags and environment variables."""

    def env_int(name: str) -> Optional[int]:
        value = os.environ.get(name)
        return int(value) if value not in (None, "") else None

    return DistributedConfig(
        mode=getattr(args, "distributed", "auto"),
        coordinator_address=getattr(args, "coordinator_address", None) or os.environ.get("JAX_COORDINATOR_ADDRESS"),
        num_processes=getattr(args, "num_processes", None) or env_int("JAX_NUM_PROCESSES"),
        process_id=(args.process_id if getattr(args, "process_id", None) is not None else env_int("JAX_PROCESS_ID")),
    )


def _on_detected_cluster() -> bool:
    """Whether JAX's cluster detection would find something (TPU pod worker, SLURM job, MPI, k8s)."""
    markers = ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri",
               "MEGASCALE_COORDINATOR_ADDRESS")
    return any(os.environ.get(name) for name in markers)


def initialize(config: DistributedConfig) -> bool:
    """Initialises JAX's distributed runtime when the configuration asks for it.

    Must run before any JAX computation. Idempotent.

    Args:
      config: see DistributedConfig.

    Returns:
      Whether the process is part of a multi-process job.

    Raises:
      ValueError: for an unknown mode, or "on" without enough information outside a detected cluster.
    """
    if config.mode not in MODES:
        raise ValueError(f"distributed mode {config.mode!r}: expected one of {MODES}")
    if config.mode == "off":
        return False
    explicit = config.coordinator_address is not None
    if config.mode == "auto" and not explicit and not _on_detected_cluster():
        return False
    if explicit and (config.num_processes is None or config.process_id is None):
        raise ValueError("a coordinator address needs --num_processes and --process_id "
                         "(or JAX_NUM_PROCESSES / JAX_PROCESS_ID)")
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    jax.config.update("jax_cpu_collectives_implementation", config.cpu_collectives)
    jax.distributed.initialize(coordinator_address=config.coordinator_address, num_processes=config.num_processes,
                               process_id=config.process_id,
                               initialization_timeout=config.initialization_timeout)
    logging.info("Joined a job of %d processes as process %d (%d local / %d global devices).", jax.process_count(),
                 jax.process_index(), jax.local_device_count(), jax.device_count())
    return True
