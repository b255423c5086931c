"""Spherical range-image projection of a LiDAR scan, the RangeNet++
convention.

RangeNet++ (Milioto et al., IROS 2019; PRBonn/lidar-bonnetal) feeds a 2-D
network the scan's spherical projection, as the SemanticKITTI API computes
it (PRBonn/semantic-kitti-api ``auxiliary/laserscan.py``,
``LaserScan.do_range_projection``). For points ``(x, y, z, remission)`` and
an ``H × W`` image spanning the vertical field of view ``[fov_down, fov_up]``
(degrees; the HDL-64E's +3° / −25°):

1. ``fov = |fov_up| + |fov_down|`` (radians); per point ``r = ‖(x, y,
   z)‖₂``, ``yaw = −atan2(y, x)``, ``pitch = asin(z / (r + 1e-8))`` (the
   1e-8 keeps a point at the origin defined: it lands at yaw 0, pitch 0).
2. Column ``u = ½(yaw/π + 1)·W`` and row ``v = (1 − (pitch +
   |fov_down|)/fov)·H``, floored and clamped to ``[0, W−1]``, ``[0, H−1]``:
   a point above or below the field of view is clamped into the top or
   bottom row, not dropped (the API's convention, kept).
3. Of the points falling on one pixel the nearest wins (the API writes them
   in decreasing range order, so the last, nearest, write stays). The images
   hold its range, x, y, z, remission and its index in the scan
   (``index``, the API's ``proj_idx``); empty pixels hold −1 everywhere.
   Per-point labels are projected through ``index`` where ``index >= 0``
   (the API's ``do_label_projection``), 0 elsewhere.

The ``> 0`` quirk: the API's validity mask is ``proj_idx > 0``, which also
marks the pixel of point 0 as empty (RangeNet++'s training parser then
zeroes that pixel's input and label). ``project`` returns the correct
``index >= 0`` by default; ``api_mask=True`` reproduces ``> 0``.

Where we differ from the API, and why:

* Angles and pixel coordinates are computed in float64 (the API computes in
  the scan's float32): a point within ~1e-4 px of a pixel border may land
  one pixel over from where the API puts it. Ranges are stored as float32.
* Exact ties in range on one pixel go to the lower point index; the API's
  ``argsort`` is not stable, so its winner is unspecified. And the API's
  fancy assignment with repeated pixels relies on last-write-wins, which
  NumPy does not promise; we pick each pixel's winner explicitly.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# HDL-64E vertical field of view used by RangeNet++ (``darknet21.yaml``).
FOV_UP = 3.0
FOV_DOWN = -25.0
# What the API adds to the range before dividing z by it.
EPS = 1e-8


class Projection(NamedTuple):
  """A scan's range image (H × W pixels) and its per-point pixel.

  Attributes:
    range: ``f32[H, W]``, the winning point's range in metres, −1 if empty.
    xyz: ``f32[H, W, 3]``, its coordinates, −1 if empty.
    remission: ``f32[H, W]``, its remission, −1 if empty.
    index: ``i32[H, W]``, its index in the scan, −1 if empty.
    mask: ``bool[H, W]``, ``index >= 0`` (or ``> 0`` with ``api_mask``).
    label: ``[H, W]`` of the labels' dtype, the winner's label, 0 if empty
      (``None`` without labels).
    row, col: ``i32[P]``, each point's pixel (to un-project predictions).
  """
  range: np.ndarray
  xyz: np.ndarray
  remission: np.ndarray
  index: np.ndarray
  mask: np.ndarray
  label: np.ndarray | None
  row: np.ndarray
  col: np.ndarray


def _check(points, labels, height, width, fov_up, fov_down):
  if points.ndim != 2 or points.shape[1] != 4:
    raise ValueError(f"points must be [P, 4] (x, y, z, remission), got shape "
                     f"{points.shape}.")
  bad = int(np.count_nonzero(~np.isfinite(points)))
  if bad:
    raise ValueError(f"points must be finite; {bad} entries are NaN or "
                     "inf.")
  if labels is not None and np.shape(labels) != (len(points),):
    raise ValueError(f"labels must be [P] = [{len(points)}], got shape "
                     f"{np.shape(labels)}.")
  for name, value in (("height", height), ("width", width)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
        value < 1):
      raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
  if not (math.isfinite(fov_up) and math.isfinite(fov_down)
          and fov_down <= 0 <= fov_up and fov_up > fov_down):
    raise ValueError(
        f"fov_up, fov_down must bracket the horizon (fov_down <= 0 <= fov_up, "
        f"not both 0; degrees, e.g. {FOV_UP}, {FOV_DOWN}), got {fov_up!r}, "
        f"{fov_down!r}.")


def pixels(xyz: np.ndarray, height: int, width: int, fov_up: float = FOV_UP,
           fov_down: float = FOV_DOWN) -> tuple[np.ndarray, np.ndarray,
                                                np.ndarray]:
  """Steps 1–2: ``(row i32[P], col i32[P], range f64[P])`` of points
  ``xyz: f[P, 3]``."""
  xyz = np.asarray(xyz, np.float64)
  up, down = math.radians(fov_up), math.radians(fov_down)
  fov = abs(up) + abs(down)
  r = np.linalg.norm(xyz, axis=1)
  yaw = -np.arctan2(xyz[:, 1], xyz[:, 0])
  pitch = np.arcsin(xyz[:, 2] / (r + EPS))
  col = np.floor(0.5 * (yaw / np.pi + 1.0) * width)
  row = np.floor((1.0 - (pitch + abs(down)) / fov) * height)
  col = np.clip(col, 0, width - 1).astype(np.int32)
  row = np.clip(row, 0, height - 1).astype(np.int32)
  return row, col, r


def project(points: np.ndarray, labels: np.ndarray | None = None,
            height: int = 64, width: int = 2048, fov_up: float = FOV_UP,
            fov_down: float = FOV_DOWN, api_mask: bool = False) -> Projection:
  """The range image of one scan (see the module docstring).

  Args:
    points: ``f32[P, 4]`` x, y, z (metres), remission; finite.
    labels: optional per-point labels ``[P]`` (any integer dtype).
    height, width: H, W (RangeNet++: 64 × 2048; the API's default W 1024).
    fov_up, fov_down: the vertical field of view in degrees, fov_down <= 0
      <= fov_up.
    api_mask: ``mask = index > 0`` (the API's quirk) instead of ``>= 0``.

  Returns:
    A ``Projection``.

  Raises:
    ValueError: on a bad shape, a non-finite point or a bad size or fov.
  """
  points = np.asarray(points)
  _check(points, labels, height, width, fov_up, fov_down)
  row, col, r = pixels(points[:, :3], height, width, fov_up, fov_down)
  pixel = row.astype(np.int64) * width + col
  # Sort by pixel, then range (lexsort is stable: equal ranges keep the
  # lower point index first); the first point of each pixel's run wins.
  order = np.lexsort((r, pixel))
  ordered = pixel[order]
  first = np.ones(len(order), bool)
  first[1:] = ordered[1:] != ordered[:-1]
  winners = order[first]
  index = np.full(height * width, -1, np.int32)
  index[pixel[winners]] = winners
  index = index.reshape(height, width)
  hit = index >= 0
  where = index[hit]

  def image(values, channels=()):
    out = np.full((height, width) + channels, -1, np.float32)
    out[hit] = values[where]
    return out

  label = None
  if labels is not None:
    labels = np.asarray(labels)
    label = np.zeros((height, width), labels.dtype)
    label[hit] = labels[where]
  return Projection(
      range=image(r), xyz=image(points[:, :3], (3,)),
      remission=image(points[:, 3]), index=index,
      mask=index > 0 if api_mask else hit, label=label, row=row, col=col)
