"""``ntdh-sweep --multihost`` as 2 processes on localhost, against 1 process.

Each process is the real CLI with ``--multihost`` (``jax.distributed
.initialize()`` with no arguments), started the way ``srun`` starts it: JAX's
SLURM detection reads ``SLURM_NTASKS`` / ``SLURM_PROCID`` / ...  for the
process count and id and ``SLURM_STEP_NODELIST`` + ``JAX_COORDINATOR_PORT``
for the coordinator (``localhost`` and a free port). CPU collectives (the
``process_allgather`` of ``sharding.fetch`` and the barriers of ``_remove``
and orbax) go over gloo, JAX's default ``jax_cpu_collectives_implementation``.

Proves: both processes exit 0; ``results.jsonl`` holds exactly the rows of a
single-process run of the same sweep, bit for bit (with a fixed
``--vmap_size`` a run's bits do not depend on the device count) -- no row
lost, none written twice; the report is written and the chunk checkpoints
are cleared.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ntdh_jax import config as config_lib
from ntdh_jax import experiments
from tests import conftest
from tests.toy_programs import SWEEP_CONFIG  # the same toy sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = dict(chunk_size=2, segments_per_call=2, vmap_size=1)
PROCESSES = 2
TIMEOUT_S = 420  # for the whole multi-process sweep; a hang fails, never waits


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _lines(workdir):
  path = os.path.join(workdir, "results.jsonl")
  with open(path, "rb") as f:
    return [line for line in f.read().split(b"\n") if line]


def _env(process_id: int, port: int, devices: int) -> dict:
  """What ``srun -n 2`` would set, reduced to what JAX reads, on CPU."""
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_", "XLA_",
                              "TPU_"))}
  env.update(
      PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
      XLA_FLAGS=conftest.xla_flags(
          f"--xla_force_host_platform_device_count={devices}"),
      SLURM_JOB_ID="1", SLURM_STEP_NODELIST="localhost",
      SLURM_NTASKS=str(PROCESSES), SLURM_PROCID=str(process_id),
      SLURM_LOCALID=str(process_id), JAX_COORDINATOR_PORT=str(port),
      # gloo is the default; named so a changed default cannot skip it.
      JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
  return env


def _logs(paths) -> str:
  out = []
  for i, path in enumerate(paths):
    with open(path, "rb") as f:
      out.append(f"--- process {i} ---\n"
                 + f.read().decode(errors="replace")[-6000:])
  return "\n".join(out)


def _launch(config_path, workdir, devices):
  """Runs the sweep as ``PROCESSES`` CLI processes; returns their exit codes
  and logs. Every wait is bounded; on a timeout all are killed."""
  port = _free_port()
  procs, logs = [], []
  try:
    for i in range(PROCESSES):
      logs.append(f"{workdir}.process{i}.log")
      with open(logs[-1], "wb") as log:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ntdh_jax.cli", "--config", config_path,
             "--workdir", str(workdir), "--multihost", "--no-progress",
             "--compilation_cache", "none",
             *[f"--{k}={v}" for k, v in FLAGS.items()]],
            env=_env(i, port, devices), cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT))
    deadline = time.monotonic() + TIMEOUT_S
    # Until all end, or one fails (the others may then wait at a barrier).
    while any(p.poll() is None for p in procs) and not any(
        p.poll() for p in procs):
      if time.monotonic() > deadline:
        pytest.fail(f"the {PROCESSES}-process sweep did not end within "
                    f"{TIMEOUT_S} s:\n" + _logs(logs))
      time.sleep(0.2)
    for proc in procs:  # a failed one's partners are killed below
      if proc.poll() is None:
        proc.kill()
      proc.wait(timeout=30)
    return [p.returncode for p in procs], _logs(logs)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def sweep_config(tmp_path_factory):
  path = tmp_path_factory.mktemp("config") / "toy_sweep.py"
  path.write_text(SWEEP_CONFIG)
  return str(path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sweep_config):
  """The same sweep in this one process: raw lines of results.jsonl."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  base, configs, fingerprint = config_lib.load_sweep(sweep_config)
  rows = experiments.run(configs, workdir, base=base, progress=False,
                         fingerprint=fingerprint, **FLAGS)
  lines = _lines(workdir)
  assert len(lines) == len(rows) == len({r["run_id"] for r in rows}) > 1
  return lines


@pytest.mark.slow  # 2 JAX processes, each compiling the toy programs
@pytest.mark.parametrize("devices", [1, 2], ids=lambda d: f"{d}dev_per_proc")
def test_two_processes_write_the_rows_of_one(tmp_path, sweep_config,
                                            reference, devices):
  workdir = tmp_path / "multihost"
  codes, logs = _launch(sweep_config, workdir, devices)
  assert codes == [0] * PROCESSES, logs
  lines = _lines(workdir)
  rows = [json.loads(line) for line in lines]
  want = [json.loads(line) for line in reference]
  # No row lost, none written twice (process 0 alone writes).
  assert sorted(r["run_id"] for r in rows) == sorted(
      r["run_id"] for r in want), logs
  assert len({r["run_id"] for r in rows}) == len(rows), logs
  # The same numbers, bit for bit (floats round-trip exactly through JSON);
  # the same chunks, hence the same outputs paths and indices.
  by_id = {r["run_id"]: r for r in rows}
  for row in want:
    assert by_id[row["run_id"]] == row, row["run_id"]
  # Chunks finish in the same order, so even the file is the same.
  assert lines == reference
  assert os.path.exists(workdir / "toy_report.csv")
  assert os.path.exists(workdir / "sweep.json")
  assert not os.path.exists(workdir / "chunks")
