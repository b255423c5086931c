"""Markdown tables and over-seed statistics shared by the reports.

Every number is taken from a run's last evaluation (the last entry of a
``history.*`` list in ``results.jsonl``) and aggregated over seeds.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from typing import Callable, Iterable, Mapping

import numpy as np
from scipy import stats as scipy_stats


def last(row, metric):
  """The last evaluation of ``metric`` in a results row (``None``: absent)."""
  values = row.get(f"history.{metric}")
  return None if values is None else values[-1]


def select(rows, stage=None, **tags) -> list[dict]:
  """Rows of ``stage`` (any if ``None``) whose ``tag.*`` columns match."""
  return [r for r in rows if (stage is None or r["stage"] == stage)
          and all(r.get(f"tag.{k}") == v for k, v in tags.items())]


def stats(rows, metric, scale=1.0) -> tuple[float, float, int]:
  """``(mean, std, n)`` of the last ``metric`` over ``rows`` (seeds)."""
  values = [last(r, metric) for r in rows]
  values = np.array([v for v in values if v is not None], float) * scale
  if values.size == 0:
    return float("nan"), float("nan"), 0
  return float(values.mean()), float(values.std()), int(values.size)


def final_stats(rows, metric, scale=1.0) -> tuple[float, float, int]:
  """``(mean, std, n)`` of the final-row ``metric`` (``final.*``) over the
  ``rows`` that have it."""
  values = np.array([r[f"final.{metric}"] for r in rows
                     if f"final.{metric}" in r], float) * scale
  if values.size == 0:
    return float("nan"), float("nan"), 0
  return float(values.mean()), float(values.std()), int(values.size)


def spearman(x, y) -> float:
  """Spearman's rank correlation of ``x`` and ``y``; NaN when it is
  undefined (fewer than two points, or either side constant)."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
    return float("nan")
  return float(scipy_stats.spearmanr(x, y).statistic)


def group_by(rows, key: Callable) -> dict:
  groups = defaultdict(list)
  for r in rows:
    groups[key(r)].append(r)
  return dict(sorted(groups.items()))


def fmt(mean, std, n=None, digits=2) -> str:
  del n
  return "–" if np.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def verdict(ok: bool, what: str) -> str:
  """A report's one-line verdict on a paper claim."""
  return f"**{'reproduced' if ok else 'not reproduced'}** — {what}"


def markdown(header: Iterable[str], lines: Iterable[Iterable]) -> str:
  header = list(header)
  out = ["| " + " | ".join(header) + " |",
         "|" + "---|" * len(header)]
  out += ["| " + " | ".join(str(x) for x in line) + " |" for line in lines]
  return "\n".join(out)


def tidy(rows, condition: Mapping[str, Callable]) -> list[dict]:
  """One row per (condition, metric): ``condition`` names the columns of a
  condition and how each is read from a results row; every ``history.*``
  metric's last evaluation is aggregated over the condition's runs (seeds)
  into ``mean``, ``std`` and ``n``."""
  groups = defaultdict(list)
  for r in rows:
    groups[tuple(read(r) for read in condition.values())].append(r)
  table = []
  for key, rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
    metrics = sorted({k[len("history."):] for r in rs for k in r
                      if k.startswith("history.")})
    for metric in metrics:
      mean, std, n = stats(rs, metric)
      table.append({**dict(zip(condition, key)), "metric": metric,
                    "mean": mean, "std": std, "n": n})
  return table


def write_lines(path: str, lines: list[dict]) -> None:
  """Summary lines (dicts with the same keys, in column order) as a CSV."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(lines[0]))
    writer.writeheader()
    writer.writerows(lines)


def write_csv(path: str, table: list[dict], condition: Iterable[str]) -> None:
  """``tidy``'s table as a CSV file."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(condition) + [
        "metric", "mean", "std", "n"])
    writer.writeheader()
    writer.writerows(table)
