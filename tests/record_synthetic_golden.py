"""Records the tiny synthetic study's numbers into ``data/synthetic_golden.json``.

Run once on the commit before a change that must not move the synthetic
study's numbers; ``test_synthetic_golden.py`` compares every later commit
against the file. Runs are keyed by what they are (stage, hyperparameters,
seed, tags, loss choices), not by run id, so a change of the static config's
spelling (defaults filled in) keeps the key.

  python tests/record_synthetic_golden.py
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ntdh_jax import config as config_lib  # noqa: E402
from ntdh_jax import experiments  # noqa: E402

HERE = os.path.dirname(__file__)
CONFIG = os.path.join(HERE, "..", "sweeps", "configs", "ntdh_synthetic.py")
# Every part, both presets, at a tiny scale.
OVERRIDES = ["num_seeds=2", "gaps=0,1", "weights.alphas=0,1",
             "weights.betas=0,1", "alg1.gaps=0.5", "alg1.ratios=0.5",
             "alg1.repeats=2", "alg2.ratios=0,0.5",
             "presets.reference.parts=fig3", "presets.reference.epochs=4",
             "presets.reference.eval_every=2", "presets.tuned.epochs=2",
             "presets.tuned.eval_every=1"]
VMAP_SIZE = 2
GOLDEN = os.path.join(HERE, "data", "synthetic_golden.json")
_STATIC_KEYS = ("distill", "sample_mask", "feature_mask", "optimizer",
                "batch_size", "epochs")
# Static choices a run may leave out: absent means this.
_STATIC_DEFAULTS = {"distill": "none", "sample_mask": "none",
                    "feature_mask": "none"}


def canonical_key(key: dict) -> str:
  static = {k: _STATIC_DEFAULTS.get(k) if v is None else v
            for k, v in key["static"].items()}
  return json.dumps({**key, "static": static}, sort_keys=True)


def run_key(row: dict) -> str:
  """What a run is, independent of how its static config is spelled."""
  return canonical_key({
      "stage": row["stage"], "seed": row["seed"],
      "hp": {k: v for k, v in row.items() if k.startswith("hp.")},
      "tag": {k: v for k, v in row.items() if k.startswith("tag.")},
      "static": {k: row.get(f"static.{k}") for k in _STATIC_KEYS}})


def numbers(row: dict) -> dict:
  return {k: v for k, v in row.items()
          if k.startswith(("final.", "history."))}


def run_tiny_study(workdir: str) -> dict:
  base, configs, fingerprint = config_lib.load_sweep(CONFIG + ":quick",
                                                     OVERRIDES)
  rows = experiments.run(configs, workdir, base=base, progress=False,
                         fingerprint=fingerprint, vmap_size=VMAP_SIZE)
  return {run_key(r): numbers(r) for r in rows}


if __name__ == "__main__":
  with tempfile.TemporaryDirectory() as tmp:
    golden = run_tiny_study(tmp)
  with open(GOLDEN, "w") as f:
    json.dump(golden, f, indent=0, sort_keys=True)
  print(f"{len(golden)} runs -> {GOLDEN}")
