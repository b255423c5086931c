"""Smoke tests of ``benchmarks/vs_pytorch.py`` at toy size (2 epochs, K = 2
units trained by the engine's groups, PyTorch timed on one and
extrapolated, no CNN): its main entry runs in-process and prints the table
with finite, positive rates, the floor and the goal lines, and the accuracy
check; ``benchmarks/gpu.sh`` runs it the same way on a CPU. One K, not two:
each K compiles three programs, and one K keeps a test near 20 s on 2
cores."""

import importlib.util
import math
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("torch")  # the `bench` extra

SCRIPT = (pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
          / "vs_pytorch.py")


def _load():
  spec = importlib.util.spec_from_file_location("vs_pytorch", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_main_prints_the_table_with_finite_positive_rates(capsys):
  rows = _load().main(["--epochs", "2", "--ks", "2", "--torch-max", "1",
                       "--peak-repeats", "1", "--device-note", "smoke test"])
  out = capsys.readouterr().out
  lines = out.splitlines()
  header = lines.index("| K | engine trainings/s | PyTorch trainings/s | "
                       "ratio | GFLOP/s | % of peak | setup s |")
  line = lines[header + 2]
  cells = [c.strip() for c in line.split("|")[1:-1]]
  assert cells[0] == "2" and cells[2].endswith("*"), line  # extrapolated
  values = [float(c.rstrip("*x")) for c in cells[1:]]
  assert all(math.isfinite(v) and v > 0 for v in values), line
  assert "device note: smoke test" in out
  assert "vmap_size 16; PyTorch on cpu" in out  # the engine's defaults
  assert "Floor:" in out and "Goal engine >= 10x the PyTorch loop" in out
  assert "| K | teacher | student without KD | KD student | KD gap |" in out
  # Same start, data and float32 math on both sides: two epochs agree.
  (row,) = rows
  engine, torch_acc = row["acc"]["engine"], row["acc"]["torch"]
  assert abs(engine["kd"][0] - torch_acc["kd"][0]) < 0.02


def test_the_prepared_gpu_script_runs_on_a_cpu_at_toy_size():
  """``benchmarks/gpu.sh`` passes its flags through (later ones win), so the
  GPU run is the benchmark above; on a machine without a GPU it says so."""
  script = SCRIPT.parent / "gpu.sh"
  done = subprocess.run(
      ["bash", str(script), "--ks", "2", "--epochs", "2", "--torch-max", "1",
       "--peak-repeats", "1", "--torch-device", "cpu", "--cpu-devices", "1"],
      capture_output=True, text=True, check=False, timeout=600,
      # The script calls ``python``: the interpreter running the tests, as
      # an activated environment would have it.
      env={**os.environ, "PATH": os.pathsep.join(
          [os.path.dirname(sys.executable), os.environ.get("PATH", "")])})
  assert done.returncode == 0, done.stderr[-2000:]
  assert "device note: GPU: " in done.stdout
  assert "vmap_size 1024; PyTorch on cpu" in done.stdout
  assert "Goal engine >= 10x the PyTorch loop" in done.stdout
