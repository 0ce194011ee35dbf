"""Several processes (hosts, or one per GPU): joining the run before JAX touches a device.

Every process runs the same command; together they form one mesh over all their devices
(:mod:`acne_jax.training.parallel`), each feeds its own slice of the global batch, and the first
process writes the files. How the processes find each other, in order of precedence:

1. flags: ``--coordinator_address=host:port --num_processes=N --process_id=i``;
2. environment: ``ACNE_JAX_COORDINATOR_ADDRESS``, ``ACNE_JAX_NUM_PROCESSES``, ``ACNE_JAX_PROCESS_ID``;
3. SLURM: inside a job step with several tasks (``srun``), JAX reads them from SLURM's variables;
4. otherwise a single process: nothing to join.

On CPU the processes exchange data through gloo (JAX's CPU collectives).
"""

from __future__ import annotations

import os
from typing import Optional

import jax

ENVIRONMENT = ("ACNE_JAX_COORDINATOR_ADDRESS", "ACNE_JAX_NUM_PROCESSES", "ACNE_JAX_PROCESS_ID")


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> bool:
  """Joins the multi-process run described by the arguments, the environment or SLURM (module
  docstring); returns whether there is one. Call before anything else uses JAX.

  Raises:
    ValueError: an address without the process count and id (or the reverse).
  """
  env = os.environ
  coordinator_address = coordinator_address or env.get(ENVIRONMENT[0]) or None
  if num_processes is None and env.get(ENVIRONMENT[1]):
    num_processes = int(env[ENVIRONMENT[1]])
  if process_id is None and env.get(ENVIRONMENT[2]):
    process_id = int(env[ENVIRONMENT[2]])
  given = (coordinator_address is not None, num_processes is not None, process_id is not None)
  if any(given) and not all(given):
    raise ValueError("a multi-process run needs all three of --coordinator_address, --num_processes and --process_id "
                     f"(or {', '.join(ENVIRONMENT)}); got address={coordinator_address!r}, processes={num_processes!r}, "
                     f"id={process_id!r}.")
  slurm = int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env
  if not all(given) and not slurm:
    return False
  if all(given) and num_processes == 1:
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # only the CPU backend reads it
  if all(given):
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
  else:
    jax.distributed.initialize()  # SLURM's variables
  return True


def is_primary() -> bool:
  """Whether this process writes the run's files (the first one)."""
  return jax.process_index() == 0
