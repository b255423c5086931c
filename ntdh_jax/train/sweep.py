"""The sweep engine: thousands of runs as a few compiled, sharded programs.

``run_sweep(specs, workdir, build_program=...)`` trains every ``RunSpec``:

* Runs sharing a ``signature`` (stage + static) form a group, trained by one
  vmapped program: ``init`` / ``segment`` / ``finish`` of the group's
  ``Program`` mapped over a leading run axis (hparams ``f32[width]`` per
  name, seeds ``i32[width]`` turned into ``jax.random.key(seed)`` inside,
  inputs = the stacked upstream outputs).
* A group is cut into chunks of ``chunk_size`` runs in a fixed order; every
  chunk is padded (repeating its first run) to the group's ``width``, a
  multiple of ``devices * vmap_size``, so all chunks reuse the same
  executables. Padding rows are computed and dropped.
* The run axis is sharded over a 1-D ``sweep`` mesh of all devices and each
  device trains its own runs, ``vmap_size`` at a time (``sharding.py``);
  runs never communicate. With a fixed ``vmap_size`` a run's bits do not
  depend on the device count.
* Groups run in order of depth in the ``needs`` graph: a run's upstream
  finished earlier (or in a previous launch of the same workdir).

Files under ``workdir``::

  results.jsonl                  one row per run (``results.py``)
  sweep.json                     fingerprint of the config that made it
  chunks/<chunk-id>/<step>/      latest carry + history of an unfinished chunk
  outputs/<signature>/<chunk-id>/0/   stacked ``outputs`` of a finished chunk

``chunk-id`` hashes the signature and the run ids of the chunk, so a relaunch
finds the same chunks under the same names.

Resume protocol (a SIGKILL at any moment loses no run and duplicates none):

1. Every ``segments_per_call`` segments the chunk saves ``{carry, history}``
   as step = segments done (orbax: atomic, only the newest kept).
2. After ``finish`` it saves the outputs, then appends all the chunk's rows in
   one atomic write, then deletes the chunk checkpoints.
3. On relaunch a chunk whose runs are all in ``results.jsonl`` is skipped;
   any other restarts from its newest checkpoint (or from ``init``; also when
   the checkpoint does not fit or is corrupted, e.g. after a relaunch on
   another device count). Outputs already saved are kept (recomputing gives
   the same bits).
4. Every checkpoint and stored output is sealed with a digest of its files
   and verified when read (``checkpoint.py``). Before training, the stored
   outputs that unfinished runs need are verified; a chunk whose outputs are
   missing or corrupted is trained again (one warning line), and its new
   rows must equal the stored ones, or the sweep stops.

All steps are deterministic, so a resumed sweep gives bit-identical rows.
With ``logging`` at INFO (``ntdh-sweep --verbose``) the engine logs a line
at every checkpoint, stored output and batch of rows: progress markers.

Launching on several devices and hosts
--------------------------------------
One host: ``ntdh-sweep --config ... --workdir ...`` uses every visible
device (all GPUs of the host; on CPU, ``XLA_FLAGS=
--xla_force_host_platform_device_count=8`` makes 8). Several hosts (a GPU
cluster, a TPU pod slice): every host runs the *same* command with
``--multihost``, which calls ``jax.distributed.initialize()`` first; on TPU
slices (``gcloud compute tpus tpu-vm ssh NAME --worker=all
--command="ntdh-sweep ... --multihost"``), under SLURM (``srun``) and Open MPI
(``mpirun``) the coordinator and process ids are detected automatically. The
workdir must be one filesystem all hosts see (NFS, GCS FUSE). Every process
takes part in the (collective) orbax saves; only process 0 writes
``results.jsonl`` and ``sweep.json`` and shows progress.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import logging
import os
import shutil
from typing import Callable, Mapping, Sequence

import jax
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from ntdh_jax.errors import UserError
from ntdh_jax.train import checkpoint, lock, sharding
from ntdh_jax.train.program import Program, RunSpec
from ntdh_jax.train.results import RESULTS, ResultsStore, flatten_dict

CHUNKS = "chunks"
OUTPUTS = "outputs"
# Runs vectorised together per device unless told otherwise: fixed, so a
# sweep gives the same bits on a laptop and on 8 devices.
DEFAULT_VMAP_SIZE = 16
_INT32 = np.iinfo(np.int32)
_LOG = logging.getLogger(__name__)


def chunk_id(signature: str, run_ids: Sequence[str]) -> str:
  """Stable name of a chunk: the same runs always map to the same id."""
  text = json.dumps([signature, list(run_ids)])
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _dedupe(specs: Sequence[RunSpec]) -> list[RunSpec]:
  return list({s.run_id: s for s in reversed(specs)}.values())[::-1]


def _groups(specs: list[RunSpec], finished: Mapping[str, dict],
            workdir: str) -> list[list[RunSpec]]:
  """Runs grouped by (depth in the ``needs`` graph, signature), in run order.

  A run's depth is 1 + the deepest of its upstream runs in this sweep (0 for
  none, or when every upstream finished in an earlier launch). Both the
  grouping and the order inside a group depend only on the specs (never on
  what is already finished), so chunks are the same on every launch. Runs
  are ordered by their upstream runs' order first, so a downstream chunk
  reads few upstream output chunks.
  """
  by_id = {s.run_id: s for s in specs}
  orders: dict[str, tuple] = {}
  depths: dict[str, int] = {}

  def visit(spec: RunSpec, path: tuple = ()) -> None:
    if spec.run_id in orders:
      return
    if spec.run_id in path:
      raise ValueError(f"Run {spec.run_id} needs itself (a cycle in needs).")
    ups = []
    for role, up in sorted(spec.needs_dict.items()):
      if up in by_id:
        visit(by_id[up], path + (spec.run_id,))
        ups.append(up)
      elif up not in finished:
        raise ValueError(
            f"Run {spec.run_id} (stage {spec.stage!r}) needs run {up} as "
            f"{role!r}, which is neither in this sweep nor finished in "
            f"{workdir}.")
    depths[spec.run_id] = 1 + max((depths[u] for u in ups), default=-1)
    orders[spec.run_id] = (tuple(orders[u] for u in ups)
                           or tuple(sorted(spec.needs_dict.values())),
                           spec.run_id)

  for spec in specs:
    visit(spec)
  groups: dict[tuple, list[RunSpec]] = {}
  for spec in sorted(specs, key=lambda s: orders[s.run_id]):
    groups.setdefault((depths[spec.run_id], spec.stage, spec.signature),
                      []).append(spec)
  return [groups[g] for g in sorted(groups)]


def _stack_hparams(chunk: Sequence[RunSpec]) -> dict[str, np.ndarray]:
  names = set(chunk[0].hparams_dict)
  for spec in chunk:
    if set(spec.hparams_dict) != names:
      raise ValueError(
          f"Runs {chunk[0].run_id} and {spec.run_id} share signature "
          f"{spec.signature} but not hyperparameter names: "
          f"{sorted(names)} vs {sorted(spec.hparams_dict)}.")
  return {n: np.asarray([s.hparams_dict[n] for s in chunk], np.float32)
          for n in sorted(names)}


def _stack_seeds(chunk: Sequence[RunSpec]) -> np.ndarray:
  for spec in chunk:
    if not _INT32.min <= spec.seed <= _INT32.max:
      raise ValueError(f"Run {spec.run_id} has seed {spec.seed}; seeds must "
                       "fit in int32 to be traced.")
  return np.asarray([s.seed for s in chunk], np.int32)


def _remove(path: str) -> None:
  """Deletes a directory (process 0) and waits until every process sees it."""
  if jax.process_index() == 0:
    shutil.rmtree(path, ignore_errors=True)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"remove {path}")


class _Group:
  """One signature's program compiled for chunks of ``width`` runs.

  Each piece maps stacked arrays ``[width, ...]`` run by run and runs on the
  devices via ``sharding.map_shards``, with the program's dataset passed
  whole and unmapped; ``carry`` and ``metrics`` are the abstract shapes of a
  chunk's state and of one segment's metrics.
  """

  def __init__(self, program: Program, hparams: Sequence[str], mesh,
               width: int, segments_per_call: int, vmap_size: int | None):
    self.program = program
    self.data = program.load()
    self.mesh = mesh
    self.width = width
    self.segments_per_call = segments_per_call
    self.vmap_size = vmap_size
    self.cache = {}  # outputs path -> restored upstream outputs (host)
    self._advance = {}
    init = self._blocked(lambda hp, seed, inputs, data: program.init(
        hp, jax.random.key(seed), data, inputs))
    self.init = sharding.map_shards(init, mesh)
    self.finish = sharding.map_shards(self._blocked(program.finish), mesh)
    hp = {n: self._abstract((), np.float32) for n in hparams}
    inputs = None if program.input_spec is None else jax.tree.map(
        lambda s: self._abstract(s.shape, s.dtype), program.input_spec)
    data = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                        self.data)
    # eval_shape drops shardings; restore targets need them back.
    self.carry = jax.tree.map(
        lambda a: self._abstract(a.shape[1:], a.dtype),
        jax.eval_shape(init, data, hp, self._abstract((), np.int32), inputs))
    self.metrics = jax.eval_shape(self._advance_fn(1), data, self.carry,
                                  hp)[1]

  def _abstract(self, shape, dtype) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((self.width,) + tuple(shape), dtype,
                                sharding=sharding.stacked(self.mesh))

  def _blocked(self, fn):
    """``fn(*one_run, data)`` -> ``run(data, *runs)`` of ``[n]`` runs,
    vmapped ``vmap_size`` at a time (``None``: all ``n``); ``data`` is
    closed over by the map, i.e. shared by every run, never batched. The
    block shape fixes a run's floating-point bits (XLA picks kernels by
    shape), however many devices share the chunk."""
    def run(data, *args):
      width = jax.tree.leaves(args)[0].shape[0]
      return jax.lax.map(lambda a: fn(*a, data), args,
                         batch_size=self.vmap_size or width)
    return run

  def _advance_fn(self, segments: int):
    def run(carry, hp, data):
      return jax.lax.scan(lambda c, _: self.program.segment(c, hp, data),
                          carry, None, length=segments)
    return self._blocked(run)

  def advance(self, segments: int):
    """``(data, carry, hp) -> (carry, {metric: [width, segments]})``,
    compiled once per distinct ``segments`` (at most two: the call size and a
    remainder)."""
    if segments not in self._advance:
      # The carry is donated: run_chunk replaces it with the output.
      self._advance[segments] = sharding.map_shards(
          self._advance_fn(segments), self.mesh, donate_argnums=(0,))
    return self._advance[segments]

  def inputs(self, chunk, rows, workdir):
    """Upstream outputs of each run by role, stacked ``[width, ...]`` on the
    host."""
    if self.program.input_spec is None:
      return None
    stacked = {}
    for role, spec in self.program.input_spec.items():
      sources = [(rows[s.needs_dict[role]]["outputs.path"],
                  rows[s.needs_dict[role]]["outputs.index"]) for s in chunk]
      for path, _ in sources:
        if (role, path) not in self.cache:
          self.cache[(role, path)] = self._restore_outputs(
              role, spec, path, chunk, rows, workdir)
      per_run = [jax.tree.map(lambda x, i=i: x[i], self.cache[(role, p)])
                 for p, i in sources]
      stacked[role] = jax.tree.map(lambda *xs: np.stack(xs), *per_run)
    keep = {(r, rows[s.needs_dict[r]]["outputs.path"])
            for s in chunk for r in self.program.input_spec}
    self.cache = {k: v for k, v in self.cache.items() if k in keep}
    return stacked

  def _restore_outputs(self, role, spec, path, chunk, rows, workdir):
    run = next(s for s in chunk
               if rows[s.needs_dict[role]]["outputs.path"] == path)
    directory = os.path.join(workdir, path)
    leaves = jax.tree.leaves(checkpoint.saved_spec(directory))
    stored_width = leaves[0].shape[0] if leaves else 0
    abstract = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct((stored_width,) + tuple(s.shape),
                                       s.dtype), spec)
    try:
      return _read_outputs(directory, _chunk_rows(rows, path), abstract)
    except checkpoint.CheckpointCorrupted:
      raise
    except ValueError as e:
      raise ValueError(
          f"Outputs of run {run.needs_dict[role]} ({directory}) do not fit "
          f"the input_spec[{role!r}] of run {run.run_id} (stage "
          f"{run.stage!r}): {e}") from e


@functools.cache
def _malloc_trim():
  """glibc's ``malloc_trim``, or ``None`` where the C library has none;
  looked up on first use, not at import."""
  try:
    return ctypes.CDLL(None).malloc_trim  # the process's own C library
  except (AttributeError, OSError, TypeError):  # not glibc; Windows
    return None


def _release_freed_memory() -> None:
  """Hands the heap's free pages back to the OS (glibc's ``malloc_trim``).

  Each chunk frees its state, but glibc keeps freed pages for later
  allocations, and allocations of other sizes land elsewhere: without this a
  long sweep's resident memory grew program by program (the digits study
  from 0.9 to 3 GB over its Table II programs, with no live arrays left
  between them). A no-op where the C library is not glibc.
  """
  trim = _malloc_trim()
  if trim is not None:
    trim(0)


def _check_needs(group: Sequence[RunSpec], program: Program) -> None:
  roles = sorted(program.input_spec or {})
  for spec in group:
    if sorted(spec.needs_dict) != roles:
      raise ValueError(
          f"Run {spec.run_id} (stage {spec.stage!r}) needs runs for roles "
          f"{sorted(spec.needs_dict)} but its program takes inputs for roles "
          f"{roles}; runs take inputs exactly for the roles of their "
          "program's input_spec.")


def _run_chunk(group: _Group, chunk: list[RunSpec], cid: str,
               rows: Mapping[str, dict], workdir: str) -> list[dict]:
  """Trains one chunk (resuming from its checkpoint) and returns its rows."""
  padded = chunk + [chunk[0]] * (group.width - len(chunk))
  hp, seeds = sharding.put((_stack_hparams(padded), _stack_seeds(padded)),
                           group.mesh)
  total = group.program.num_segments
  # Host copy of the curves: [width, num_segments] per metric.
  history = {m: np.zeros((group.width, total), a.dtype)
             for m, a in group.metrics.items()}

  directory = os.path.join(workdir, CHUNKS, cid)
  done = checkpoint.latest_step(directory)
  state = None
  if done is not None:
    try:
      state = checkpoint.restore(
          directory, {"carry": group.carry, "history": history}, done)
      _LOG.info("Chunk %s resumes at segment %d/%d.", cid, done, total)
    except ValueError as e:  # e.g. relaunched on another device count
      _LOG.warning("Chunk %s restarts; its checkpoint is unusable: %s",
                   cid, e)
      _remove(directory)
  if state is None:
    done = 0
    inputs = group.inputs(padded, rows, workdir)
    if inputs is not None:
      inputs = sharding.put(inputs, group.mesh)
    carry = group.init(group.data, hp, seeds, inputs)
  else:
    carry = state["carry"]
    history = {m: np.array(v) for m, v in state["history"].items()}

  while done < total:
    segments = min(group.segments_per_call, total - done)
    carry, new = group.advance(segments)(group.data, carry, hp)
    for name, values in sharding.fetch(new).items():
      history[name][:, done:done + segments] = values
    done += segments
    checkpoint.save(directory, done, {"carry": carry, "history": history},
                    keep=1)
    _LOG.info("Chunk %s: checkpoint at segment %d/%d.", cid, done, total)

  final, outputs = group.finish(group.data, carry, hp)
  outputs_path = os.path.join(OUTPUTS, chunk[0].signature, cid)
  stored = os.path.join(workdir, outputs_path)
  if checkpoint.latest_step(stored) is None:
    checkpoint.save(stored, 0, outputs)
    _LOG.info("Chunk %s: outputs stored.", cid)
  digest = _outputs_digest(sharding.fetch(outputs), len(chunk))
  final = sharding.fetch(final)
  return [_row(spec, i, final, history, outputs_path, digest)
          for i, spec in enumerate(chunk)]


def _row(spec: RunSpec, index: int, final: Mapping, history: Mapping,
         outputs_path: str, outputs_digest: str) -> dict:
  """The results row of run ``index`` of a chunk."""
  row = {"run_id": spec.run_id, "stage": spec.stage,
         "signature": spec.signature, "seed": spec.seed,
         "needs": spec.needs_dict}
  row.update({f"hp.{k}": v for k, v in spec.hparams})
  row.update(flatten_dict(spec.static_dict, "static."))
  row.update(flatten_dict(spec.tags_dict, "tag."))
  row.update({f"final.{k}": float(v[index]) for k, v in final.items()})
  row.update({f"history.{k}": [float(x) for x in v[index]]
              for k, v in history.items()})
  row.update({"outputs.path": outputs_path, "outputs.index": index,
              "outputs.digest": outputs_digest})
  return row


def _reverify_upstream(specs: Sequence[RunSpec], rows: dict[str, dict],
                       workdir: str) -> dict[str, dict]:
  """Verifies the stored outputs that unfinished runs need.

  A finished chunk whose outputs are missing or corrupted (deleted,
  overwritten, a flipped byte) is taken out of ``rows``, its outputs
  directory deleted, so the engine trains it again before its downstream
  runs. Returns ``{run_id: stored row}`` of those runs: the recomputed rows
  must equal them.
  """
  by_id = {s.run_id for s in specs}
  needed = sorted({rows[up]["outputs.path"] for s in specs
                   if s.run_id not in rows
                   for up in s.needs_dict.values() if up in rows})
  stored = {}
  for path in needed:
    lost = _chunk_rows(rows, path)
    try:
      _read_outputs(os.path.join(workdir, path), lost)
      continue
    except (FileNotFoundError, checkpoint.CheckpointCorrupted) as e:
      problem = e
    foreign = [r["run_id"] for r in lost if r["run_id"] not in by_id]
    if foreign:
      raise UserError(
          f"Stored outputs {os.path.join(workdir, path)} are unusable "
          f"({problem}) and runs {foreign} that made them are not in this "
          "sweep, so they cannot be recomputed; relaunch the config that "
          "planned them, or start a new --workdir.")
    _LOG.warning(
        "Stored outputs %s of %d finished runs are unusable (%s); training "
        "that chunk again (runs are deterministic: the same bits).",
        os.path.join(workdir, path), len(lost), problem)
    _remove(os.path.join(workdir, path))
    stored.update((r["run_id"], rows.pop(r["run_id"])) for r in lost)
  return stored


def _outputs_digest(outputs, num_runs: int) -> str:
  """Content digest of a chunk's outputs without its padding rows, whose
  number depends on the device count."""
  return checkpoint.tree_digest(jax.tree.map(lambda x: x[:num_runs],
                                             outputs))


def _chunk_rows(rows: Mapping[str, dict], path: str) -> list[dict]:
  """The rows of the finished chunk whose outputs are at ``path`` (a chunk's
  rows are appended together, so all of them)."""
  return [r for r in rows.values() if r.get("outputs.path") == path]


def _read_outputs(directory: str, chunk_rows: Sequence[dict],
                  spec=None) -> dict:
  """A chunk's stored outputs on the host (``spec``: the abstract tree
  expected, default: as stored), checked against their seal and against
  the content digest recorded in the chunk's rows."""
  if spec is None:
    spec = checkpoint.saved_spec(directory, 0)
  outputs = jax.device_get(checkpoint.restore(directory, spec, 0))
  recorded = chunk_rows[0].get("outputs.digest") if chunk_rows else None
  if recorded is not None:
    digest = _outputs_digest(outputs, len(chunk_rows))
    if digest != recorded:
      raise checkpoint.CheckpointCorrupted(
          f"Outputs {directory!r} hold other arrays than their runs stored "
          f"(content digest {digest[:16]}, recorded {recorded[:16]}): "
          "replaced by another chunk's outputs?")
  return outputs


def run_outputs(workdir: str, rows: Sequence[dict],
                selected: Sequence[Mapping]) -> list[dict]:
  """The stored outputs (host arrays, verified like an upstream read) of
  the runs of results rows ``selected``, e.g. masked teachers'
  ``feature_mask`` for a report's figure; each chunk is read once."""
  by_id = {r["run_id"]: r for r in rows}
  chunks = {}
  for row in selected:
    path = row["outputs.path"]
    if path not in chunks:
      chunks[path] = _read_outputs(os.path.join(workdir, path),
                                   _chunk_rows(by_id, path))
  return [jax.tree.map(lambda x, i=row["outputs.index"]: np.asarray(x[i]),
                       chunks[row["outputs.path"]]) for row in selected]


def _check_recomputed(new: Sequence[dict], stored: Mapping[str, dict]):
  """Recomputed rows must equal the rows stored for the same runs."""
  for row in new:
    if row["run_id"] not in stored:
      continue
    old = stored[row["run_id"]]
    fresh = json.loads(json.dumps(row, sort_keys=True))
    differing = sorted(k for k in fresh if old.get(k) != fresh[k])
    if differing:
      raise UserError(
          f"Run {row['run_id']} was trained again because its stored outputs "
          f"were unusable, and its new results differ from the stored row "
          f"in {differing[:5]}: the library version, the devices or "
          "--vmap_size changed since it was written; start a new --workdir.")


def _no_space(error: BaseException) -> BaseException | None:
  """The ENOSPC in ``error``'s chain of causes (orbax and tensorstore wrap
  it, tensorstore as text), or ``None``."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or (
        os.strerror(errno.ENOSPC) in str(error)):
      return error
    error = error.__cause__ or error.__context__
  return None


class DiskFull(UserError):
  """The disk under the workdir filled up while the sweep was writing."""


@contextlib.contextmanager
def disk_full_is_a_user_error(workdir: str):
  """Turns "No space left on device", however deeply wrapped, into one
  ``DiskFull`` line: nothing written so far is lost (checkpoints, outputs
  and rows are written atomically), so freeing space and relaunching
  resumes."""
  try:
    yield
  except UserError:
    raise
  except Exception as e:
    cause = _no_space(e)
    if cause is None:
      raise
    where = getattr(cause, "filename", None) or workdir
    raise DiskFull(
        f"No space left on device while writing {where}: the results so far "
        f"({os.path.join(workdir, RESULTS)}) and checkpoints are intact; "
        "free some space and run the same command again to resume.") from e


def _group_mesh(mesh, num_runs: int, vmap_size: int | None):
  """The devices a group of ``num_runs`` runs uses: with a fixed
  ``vmap_size``, no more than it has blocks to fill (a 6-run group with
  blocks of 16 runs on one device, not padded to 16 runs per device); all of
  them on several hosts, where every process must take part."""
  if vmap_size is None or jax.process_count() > 1:
    return mesh
  needed = -(-num_runs // vmap_size)
  if needed >= mesh.devices.size:
    return mesh
  return sharding.sweep_mesh(list(mesh.devices.flat)[:needed])


def hold_workdir(workdir: str, wait: bool = False):
  """The workdir's lock (``lock.workdir_lock``, reentrant in one process,
  so ``experiments.run`` holds it over ``run_sweep`` and the report), taken
  by process 0 only: the other processes of a multihost sweep share its
  workdir by design."""
  if jax.process_index() == 0:
    return lock.workdir_lock(workdir, wait=wait)
  return contextlib.nullcontext()


def enable_compilation_cache(directory: str) -> None:
  """JAX's persistent compilation cache in ``directory``: a relaunch, or a
  second study with the same programs, loads executables instead of
  compiling them again (JAX keeps those that took over
  ``jax_persistent_cache_min_compile_time_secs``, 1 s by default, to
  compile)."""
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)


def run_sweep(specs: Sequence[RunSpec], workdir: str, *,
              build_program: Callable[[str, dict], Program],
              chunk_size: int = 256, segments_per_call: int = 1,
              vmap_size: int | None = DEFAULT_VMAP_SIZE,
              progress: bool = True,
              fingerprint: Mapping | None = None,
              mesh: jax.sharding.Mesh | None = None,
              wait: bool = False) -> list[dict]:
  """Trains every run of ``specs`` not yet finished in ``workdir``.

  Args:
    specs: the runs; duplicates (same ``run_id``) run once.
    workdir: where results, checkpoints and outputs live; relaunching into it
      resumes.
    build_program: ``(stage, static) -> Program``, called once per signature.
    chunk_size: runs trained together at most (bounded by device memory).
    segments_per_call: segments per compiled call; the chunk is checkpointed
      after each call, so this is also the checkpoint interval.
    vmap_size: runs vectorised together on one device. A run's
      floating-point bits depend on this block shape, so a fixed size (the
      default, ``DEFAULT_VMAP_SIZE``) gives the same bits on any device
      count; chunks are padded to a multiple of ``devices * vmap_size``, a
      group of fewer runs is one block of its size, and a group too small
      to fill every device uses fewer. ``None``: all of a
      device's share of the chunk at once, which can be faster but makes
      the bits depend on the device count.
    progress: show a tqdm bar of runs done / total (with runs/s).
    fingerprint: JSON-able description of the config; a workdir created with
      another one is refused (see ``ResultsStore.check_fingerprint``).
    mesh: a 1-D mesh named ``sweep`` (default: all devices).
    wait: when another process is sweeping into ``workdir``, wait for it to
      finish instead of refusing (``lock.workdir_lock``).

  Returns:
    One results row per distinct run, in the order of ``specs``.
  """
  for name, value in (("chunk_size", chunk_size),
                      ("segments_per_call", segments_per_call),
                      ("vmap_size", 1 if vmap_size is None else vmap_size)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
  specs = _dedupe(specs)
  with disk_full_is_a_user_error(workdir), hold_workdir(workdir, wait):
    return _run(specs, workdir, build_program, chunk_size, segments_per_call,
                vmap_size, progress, fingerprint, mesh)


def _run(specs, workdir, build_program, chunk_size, segments_per_call,
         vmap_size, progress, fingerprint, mesh) -> list[dict]:
  writer = jax.process_index() == 0
  store = ResultsStore(workdir)
  if fingerprint is not None:
    store.check_fingerprint(fingerprint, create=writer)
  rows = store.load()
  groups = _groups(specs, rows, workdir)
  recomputed = _reverify_upstream(specs, rows, workdir)
  mesh = sharding.sweep_mesh() if mesh is None else mesh
  with tqdm.tqdm(total=len(specs), unit="run", desc="sweep",
                 initial=sum(s.run_id in rows for s in specs),
                 disable=not (progress and writer)) as bar:
    todo = [g for g in groups if any(s.run_id not in rows for s in g)]
    for number, group in enumerate(todo, 1):
      stage = f"{group[0].stage} program {number}/{len(todo)}"
      # The first chunk of a program includes its compilation.
      bar.set_postfix_str(f"compiling {stage}")
      program = build_program(group[0].stage, group[0].static_dict)
      _check_needs(group, program)
      width = min(chunk_size, len(group))
      # A group smaller than a block is one block of its own size: no run
      # is computed only to be padding. The size still depends only on the
      # sweep's config, never on the device count.
      block = None if vmap_size is None else min(vmap_size, width)
      group_mesh = _group_mesh(mesh, width, block)
      compiled = _Group(
          program, _stack_hparams(group).keys(), group_mesh,
          sharding.padded_width(width, group_mesh, block or 1),
          segments_per_call, block)
      for start in range(0, len(group), chunk_size):
        chunk = group[start:start + chunk_size]
        cid = chunk_id(chunk[0].signature, [s.run_id for s in chunk])
        if any(s.run_id not in rows for s in chunk):
          new = [r for r in _run_chunk(compiled, chunk, cid, rows, workdir)
                 if r["run_id"] not in rows]
          _check_recomputed(new, recomputed)
          if writer:
            store.append(new)
          _LOG.info("Chunk %s: %d rows written.", cid, len(new))
          rows.update((r["run_id"], r) for r in new)
          bar.update(len(new))
          bar.set_postfix_str(stage)
          _remove(os.path.join(workdir, CHUNKS, cid))
          _release_freed_memory()
  # Also clears checkpoints of chunks killed after their rows were written.
  _remove(os.path.join(workdir, CHUNKS))
  return [rows[s.run_id] for s in specs]
