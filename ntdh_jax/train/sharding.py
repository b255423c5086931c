"""The sweep axis: runs stacked on a leading axis, sharded over every device.

A sweep chunk is a pytree whose leaves all have a leading axis of ``width``
runs. That axis is split over a 1-D mesh named ``sweep`` spanning every device
of every process (``NamedSharding(mesh, P("sweep"))``), and ``map_shards``
trains each device's ``width / device_count`` runs where they lie: runs are
independent, so devices never communicate.

The same code serves one CPU, ``--xla_force_host_platform_device_count=8``,
a multi-GPU host or a multi-host TPU slice; only the device count changes.
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXIS = "sweep"


def split_host_cpu(devices: int) -> bool:
  """The host CPU as ``devices`` XLA devices, so the engine trains one shard
  per core in parallel (each XLA:CPU computation mostly uses one thread).
  Only the CPU platform reads it: GPU and TPU hosts are unaffected. A device
  count already in ``XLA_FLAGS`` (``--xla_force_host_platform_device_count``)
  wins. Possible only before JAX starts its backends; returns whether the
  count was set."""
  if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS",
                                                              ""):
    return False
  try:
    jax.config.update("jax_num_cpu_devices", devices)
  except RuntimeError:  # the backends already started (an in-process call)
    return False
  return True


def sweep_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named ``sweep`` over ``devices`` (default: all, all hosts).

  The axis is ``Auto`` on purpose: ``jax.make_mesh`` defaults to ``Explicit``
  axes, under which a vmapped gather (label lookup) fails to trace.
  """
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (AXIS,), axis_types=(AxisType.Auto,))


def stacked(mesh: Mesh) -> NamedSharding:
  """Sharding of every stacked leaf: leading axis split over ``sweep``."""
  return NamedSharding(mesh, PartitionSpec(AXIS))


def padded_width(num_runs: int, mesh: Mesh, block: int = 1) -> int:
  """Smallest multiple of ``devices * block`` holding ``num_runs`` runs."""
  multiple = mesh.devices.size * block
  return -(-num_runs // multiple) * multiple


def put(tree: Any, mesh: Mesh) -> Any:
  """Host arrays ``[width, ...]`` -> global arrays sharded over ``sweep``.

  Every process passes the same full arrays and keeps only the shards of its
  own devices, which works on one host and on many alike.
  """
  sharding = stacked(mesh)

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda i: x[i])
  return jax.tree.map(one, tree)


# (id of a host tree, device) -> (the tree, its copy on the device). The tree
# is kept so its id cannot be reused while the copy is cached.
_PLACED: dict[tuple[int, jax.Device], tuple[Any, Any]] = {}


def on_device(tree: Any, device: jax.Device) -> Any:
  """``tree`` (host arrays shared by every run: a dataset) on ``device``,
  transferred once per process and reused by every later call."""
  key = (id(tree), device)
  if key not in _PLACED:
    _PLACED[key] = (tree, jax.device_put(tree, device))
  return _PLACED[key][1]


def map_shards(fn: Callable, mesh: Mesh, donate_argnums=()) -> Callable:
  """``fn`` on stacked global arrays, run shard by shard on their devices.

  ``fn(shared, *stacked)`` maps arrays ``[n, ...]`` to arrays ``[n, ...]``
  run by run; ``shared`` is a host pytree every run reads (the dataset),
  placed once on each device (``on_device``) and passed whole, unmapped.
  Each device of this process runs the same single-device executable of
  ``fn`` on its own shard; the results are assembled into global arrays
  sharded over ``sweep`` again. The stacked arguments at ``donate_argnums``
  (0 = the first after ``shared``) are donated: their buffers may hold the
  outputs, so a caller that replaces them (a chunk's carry) never holds two
  copies; they are invalid after the call.

  Why not one SPMD program (``jit`` over the mesh, or ``shard_map``): XLA
  compiles a partitioned program differently from a single-device one
  (other fusions and algebraic rewrites), so a run's last bits would depend
  on the device count. Here they do not. The price is one XLA compile per
  local device (run in parallel; tracing happens once).
  """
  jitted = jax.jit(fn, donate_argnums=tuple(1 + i for i in donate_argnums))
  sharding = stacked(mesh)
  devices = [d for d in mesh.devices.flat
             if d.process_index == jax.process_index()]

  def shard_on(device):
    return lambda x: next(s.data for s in x.addressable_shards
                          if s.device == device)

  def assemble(*parts):
    shape = (parts[0].shape[0] * mesh.devices.size,) + parts[0].shape[1:]
    return jax.make_array_from_single_device_arrays(shape, sharding,
                                                    list(parts))

  def call(shared, *args):
    # Every shard is taken before any call: donating one device's shard
    # deletes the global array it belongs to.
    shards = {device: jax.tree.map(shard_on(device), args)
              for device in devices}

    def on(device):
      return jitted(on_device(shared, device), *shards[device])
    # The first device traces; the others only compile, concurrently (XLA
    # releases the GIL), then every later call just dispatches.
    first = on(devices[0])
    with concurrent.futures.ThreadPoolExecutor(len(devices)) as pool:
      outs = [first] + list(pool.map(on, devices[1:]))
    return jax.tree.map(assemble, *outs)
  return call


def fetch(tree: Any) -> Any:
  """Global arrays -> full NumPy arrays on every process."""
  def one(x):
    if x.is_fully_addressable:
      return np.asarray(jax.device_get(x))
    return multihost_utils.process_allgather(x, tiled=True)
  return jax.tree.map(one, tree)
