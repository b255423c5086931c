"""UCMKD on the NTDH synthetic γ data: the bound's terms against γ.

  ntdh-sweep --config sweeps/configs/ucmkd_synthetic.py --workdir runs/ucmkd_synthetic

The controlled case: γ moves the teacher view's informative columns away
from the student's (0 = shared, 1 = disjoint), so the modality gap is
known. One preset per γ (no pool mismatch, no imbalance); per seed a
teacher and students by CE, vanilla KD, FA only and the bi-level method
(as the code runs it) under every pairing; the report's per-preset table
puts the teacher's error, FA and LA on the test split beside γ. Networks:
NTDH's reference MLP (50 → 16 → 16 → 4) for both views, Adam lr 0.01,
batch 64. ``:quick`` (2 seeds, fewer epochs) is a smoke run; ``:tiny``
(1 seed, 1 epoch, two γ) runs every path for the tests.
"""

from ntdh_jax import config as config_lib
from ntdh_jax.experiments import ucmkd

GAMMAS = {"tiny": [0.0, 1.0], "quick": [0.0, 0.5, 1.0],
          "full": [0.0, 0.25, 0.5, 0.75, 1.0]}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, quick=False, tiny=False)
  scale = "tiny" if arg.tiny else "quick" if arg.quick else "full"
  return ucmkd.study_config(
      scale, data={"name": "ntdh", "random_state": 42},
      model={"name": "mlp", "hidden": [16, 16], "init_scheme": "torch"},
      # Named gamma_0p25 for γ = 0.25: config keys cannot hold a dot.
      presets={f"gamma_{g:.2f}".replace(".", "p"): {
          "student_share": 1.0, "imbalance": 1.0, "knobs": {"gamma": g}}
               for g in GAMMAS[scale]},
      methods=["ce", "kd", "fa", "bilevel"], lr=0.01, eval_batch_size=2000)
