"""The MNIST-M blend (Ganin & Lempitsky, "Unsupervised Domain Adaptation by
Backpropagation", ICML 2015), shared by ``digits`` (scikit-learn's photos)
and ``mnist_pair`` (BSDS500 photos).

Recipe as in pumpikano/tf-dann ``create_mnistm.py`` and NTDH's
``MNIST/dataloader/create_mnistm.py``: per digit, a background photo and a
crop corner in ``[0, H − s) × [0, W − s)`` of that photo, then per pixel and
channel ``uint8(|crop − digit|)``, computed in float (uint8 − uint8 wraps
around, a bug in some ports). Both references seed the photo choice but draw
the corner from the unseeded global ``np.random``; here one generator draws
both (photo choice, then rows, then columns), so the blend is reproducible.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def blend(grey: np.ndarray, photos: Sequence[np.ndarray],
          rng: np.random.Generator) -> np.ndarray:
  """``u8[N, s, s]`` digits over crops of ``photos`` (``u8[H_i, W_i, 3]``,
  each larger than ``s`` on both sides) → ``u8[N, s, s, 3]``."""
  n, s = grey.shape[0], grey.shape[1]
  heights = np.array([p.shape[0] for p in photos])
  widths = np.array([p.shape[1] for p in photos])
  if (heights <= s).any() or (widths <= s).any():
    raise ValueError(f"every background photo must be larger than the "
                     f"{s}×{s} digit on both sides; got shapes "
                     f"{sorted({p.shape for p in photos})}.")
  choice = rng.integers(0, len(photos), n)
  rows = rng.integers(0, heights[choice] - s)
  cols = rng.integers(0, widths[choice] - s)
  window = np.arange(s)
  crops = np.empty((n, s, s, 3), np.uint8)
  for b in np.unique(choice):
    at = np.flatnonzero(choice == b)
    crops[at] = photos[b][(rows[at, None] + window)[:, :, None],
                          (cols[at, None] + window)[:, None, :]]
  diff = np.abs(crops.astype(np.float32) - grey[..., None].astype(np.float32))
  return diff.astype(np.uint8)
