"""Multi-process runs on JAX's own distributed runtime: one process per host (or per GPU).

JAX runs a multi-host job as one Python process per host, each calling
``jax.distributed.initialize`` before it computes anything; ``jax.devices()`` then lists the
devices of every process and a jitted step over a mesh of them runs on all hosts at once, with
XLA's collectives between them (NCCL on GPUs, ICI on TPUs, gloo over TCP on CPUs).
:func:`equilib.training.fit`, :func:`~equilib.training.evaluate`,
:func:`~equilib.training.predict` and :func:`~equilib.training.recalibrate_batch_norm` work
unchanged in such a run: the mesh spans all processes, each process feeds only its part of
every global batch, metrics are global, and only process 0 writes logs and metrics (orbax
writes the checkpoints from all processes, coordinated).

Three ways to start one:

* **Locally, for testing** (N processes on this machine, CPU collectives over gloo)::

      python -m equilib.launch --processes 2 -- python -m experiments.rotation --config smoke

  (:func:`launch`): it starts N copies of the command with the environment variables below set,
  stops all of them when one fails, and exits with that process' status.
* **On a cluster**, run the same command on every host (``srun`` under SLURM, one process per
  host or per GPU) with ``EQUILIB_DISTRIBUTED=1``: ``import equilib`` then calls
  ``jax.distributed.initialize()``, which finds the coordinator, the number of processes and
  this process' index from SLURM, Open MPI, Cloud TPU or GKE. Elsewhere set
  ``EQUILIB_COORDINATOR_ADDRESS=host:port``, ``EQUILIB_NUM_PROCESSES`` and
  ``EQUILIB_PROCESS_ID`` on each host (what :func:`launch` does).
* **From your own script**: call :func:`initialize` first, before anything runs on a device.

Every process must hold the same training data in host memory (each reads only the rows of its
devices) and run the same program with the same seeds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Sequence

__all__ = ["initialize", "initialize_from_env", "is_primary", "launch"]

ENV_ON = "EQUILIB_DISTRIBUTED"  # "1": `import equilib` initializes JAX's distributed runtime
ENV_COORDINATOR = "EQUILIB_COORDINATOR_ADDRESS"  # host:port of process 0
ENV_NUM_PROCESSES = "EQUILIB_NUM_PROCESSES"
ENV_PROCESS_ID = "EQUILIB_PROCESS_ID"
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def _env_int(environ, name: str) -> int | None:
    value = environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, heartbeat_timeout_seconds: int = 100,
               initialization_timeout: int = 300) -> bool:
    """Join this process to a multi-process JAX run (``jax.distributed.initialize``).

    Each argument left out is read from ``EQUILIB_COORDINATOR_ADDRESS``,
    ``EQUILIB_NUM_PROCESSES`` and ``EQUILIB_PROCESS_ID``; when those are unset too, JAX detects
    the cluster (SLURM, Open MPI, Cloud TPU, GKE). On CPU the cross-process collectives are set
    to gloo (JAX has none by default). Call it before anything runs on a device; a second call
    does nothing.

    Args:
        coordinator_address: ``"host:port"`` of process 0, reachable from every process.
        num_processes: the number of processes (int >= 1).
        process_id: this process' index, ``0 <= process_id < num_processes``.
        heartbeat_timeout_seconds: a process that stops answering for this long (killed,
            crashed) fails the run on every other process instead of leaving it waiting.
        initialization_timeout: seconds to wait for all processes to join.

    Returns:
        True if this call initialized the runtime, False if it already was.

    Raises:
        ValueError: ``process_id`` outside ``[0, num_processes)``, or an environment variable
            that is not an integer.
        RuntimeError: JAX's backend started before this call (JAX's own error).

    Example:
        One process is a run of one (nothing to join); the environment variables are what
        :func:`launch` sets for each process it starts:

        >>> from equilib.distributed import ENV_PROCESS_ID, is_primary
        >>> ENV_PROCESS_ID, is_primary()
        ('EQUILIB_PROCESS_ID', True)
    """
    import jax
    from jax._src import distributed as _jax_distributed  # no public "is initialized" in jax 0.10

    if _jax_distributed.global_state.client is not None:
        return False
    environ = os.environ
    coordinator_address = coordinator_address or environ.get(ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _env_int(environ, ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(environ, ENV_PROCESS_ID)
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"`process_id` must be in [0, {num_processes}) (`num_processes`={num_processes}), "
                         f"got {process_id}")
    # CPU has no cross-process collectives unless one is named; GPUs/TPUs ignore this setting
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               heartbeat_timeout_seconds=heartbeat_timeout_seconds,
                               initialization_timeout=initialization_timeout)
    return True


def initialize_from_env(environ=None) -> bool:
    """What ``import equilib`` calls: :func:`initialize` when ``EQUILIB_DISTRIBUTED`` is ``1``
    (or ``EQUILIB_PROCESS_ID`` is set, as :func:`launch` does); False otherwise."""
    environ = os.environ if environ is None else environ
    on = environ.get(ENV_ON, "").strip().lower()
    if on in ("0", "false", "no", "off") or (not on and environ.get(ENV_PROCESS_ID) is None):
        return False
    return initialize(environ.get(ENV_COORDINATOR) or None, _env_int(environ, ENV_NUM_PROCESSES),
                      _env_int(environ, ENV_PROCESS_ID))


def is_primary() -> bool:
    """True in process 0 (the one that writes logs and metrics), and in a single-process run.

    Example:
        >>> from equilib.distributed import is_primary
        >>> is_primary()
        True
    """
    import jax

    return jax.process_index() == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_device_count(xla_flags: str, count: int) -> str:
    kept = [f for f in xla_flags.split() if not f.startswith(_DEVICE_COUNT_FLAG)]
    return " ".join(kept + [f"{_DEVICE_COUNT_FLAG}={count}"])


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def launch(command: Sequence[str], processes: int, *, port: int | None = None, devices_per_process: int | None = 1,
           timeout: float | None = None, grace_seconds: float = 10.0) -> int:
    """Run ``command`` as ``processes`` processes of one distributed JAX run on this machine.

    Each process gets ``EQUILIB_DISTRIBUTED=1``, ``EQUILIB_COORDINATOR_ADDRESS=127.0.0.1:<port>``,
    ``EQUILIB_NUM_PROCESSES`` and ``EQUILIB_PROCESS_ID``, so ``import equilib`` joins it to the
    run (:func:`initialize`); on CPU, ``devices_per_process`` CPU devices each. Their output
    goes to this process' stdout/stderr. When one process fails, the others are stopped
    (SIGTERM, then SIGKILL after ``grace_seconds``) instead of waiting for it.

    Args:
        command: the program and its arguments, e.g. ``["python", "train.py"]``.
        processes: the number of processes (int >= 1).
        port: the coordinator's TCP port on 127.0.0.1 (default: a free one).
        devices_per_process: CPU devices per process (``XLA_FLAGS``
            ``--xla_force_host_platform_device_count``); None: leave ``XLA_FLAGS`` as it is.
        timeout: seconds after which all processes are stopped (None: no limit).
        grace_seconds: seconds between SIGTERM and SIGKILL when stopping.

    Returns:
        0 if every process exited with 0; otherwise the status of the first that failed
        (124 on ``timeout``).

    Raises:
        ValueError: ``processes`` or ``devices_per_process`` not a positive integer, or an
            empty ``command``.

    Example:
        >>> import sys
        >>> from equilib.distributed import launch
        >>> launch([sys.executable, "-c", "import os; assert os.environ['EQUILIB_NUM_PROCESSES'] == '2'"], 2)
        0
    """
    for name, value in (("processes", processes), ("devices_per_process", devices_per_process)):
        if value is None and name == "devices_per_process":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    command = list(command)
    if not command:
        raise ValueError("`command` must name a program to run, got an empty command")
    port = port or _free_port()
    procs: list[subprocess.Popen] = []
    for i in range(processes):
        env = dict(os.environ)
        env.update({ENV_ON: "1", ENV_COORDINATOR: f"127.0.0.1:{port}", ENV_NUM_PROCESSES: str(processes),
                    ENV_PROCESS_ID: str(i)})
        if devices_per_process is not None:
            env["XLA_FLAGS"] = _with_device_count(env.get("XLA_FLAGS", ""), devices_per_process)
        procs.append(subprocess.Popen(command, env=env))
    deadline = None if timeout is None else time.monotonic() + timeout
    status = 0
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i, status = failed[0]
                print(f"equilib.launch: process {i} of {processes} {_describe_exit(status)}; stopping the others",
                      file=sys.stderr, flush=True)
                break
            if all(c == 0 for c in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                print(f"equilib.launch: the run exceeded its timeout of {timeout} s; stopping all processes",
                      file=sys.stderr, flush=True)
                status = 124
                break
            time.sleep(0.2)
    finally:
        _stop(procs, grace_seconds)
    return status


def _stop(procs: list[subprocess.Popen], grace_seconds: float) -> None:
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.terminate()
    end = time.monotonic() + grace_seconds
    for p in alive:
        try:
            p.wait(max(end - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m equilib.launch --processes N [--port P] [--devices-per-process K] -- COMMAND...``"""
    import argparse

    p = argparse.ArgumentParser(prog="python -m equilib.launch",
                                description="Run COMMAND as N processes of one distributed JAX run on this machine.")
    p.add_argument("--processes", "-n", type=int, required=True, help="the number of processes")
    p.add_argument("--port", type=int, default=None, help="the coordinator's port on 127.0.0.1 (default: a free one)")
    p.add_argument("--devices-per-process", type=int, default=1,
                   help="CPU devices per process (0: leave XLA_FLAGS as it is); default 1")
    p.add_argument("--timeout", type=float, default=None, help="stop all processes after this many seconds")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given: python -m equilib.launch --processes N -- COMMAND ...")
    try:
        status = launch(command, args.processes, port=args.port,
                        devices_per_process=args.devices_per_process or None, timeout=args.timeout)
    except ValueError as e:
        p.error(str(e))
    return 128 - status if status < 0 else status  # killed by signal N: 128 + N, as a shell reports it
