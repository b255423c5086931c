"""Matplotlib figures of aggregated results: lines with ±1 std error bands."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
# Figure objects render to files without pyplot, so importing this module
# neither needs a display nor changes the backend of a user's notebook.
from matplotlib.figure import Figure

Series = Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]]


def band_panel(ax, series: Series, *, xlabel: str, ylabel: str, title: str):
  """One panel: for each name, ``(x, mean, std)`` as a line with a band."""
  for name, (x, mean, std) in series.items():
    x, mean, std = map(np.asarray, (x, mean, std))
    ax.plot(x, mean, marker="o", label=name)
    ax.fill_between(x, mean - std, mean + std, alpha=0.2)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  if series:
    ax.legend(fontsize="small")


def save_grid(path: str, panels: Sequence[Sequence[dict]], *,
              suptitle: str = "") -> str:
  """Draws ``panels[row][col]`` (kwargs of ``band_panel``) into one PNG."""
  rows, cols = len(panels), max(len(r) for r in panels)
  fig = Figure(figsize=(5 * cols, 3.6 * rows))
  axes = fig.subplots(rows, cols, squeeze=False)
  for r, row in enumerate(panels):
    for col in range(cols):
      if col < len(row):
        band_panel(axes[r][col], **row[col])
      else:
        axes[r][col].axis("off")
  if suptitle:
    fig.suptitle(suptitle)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path
