"""Float64 NumPy reference of the NTDH metrics, written from the definitions.

Deliberately naive (probabilities, not log space) so it shares no code path
with ``ntdh_jax.divergences``; use it on logits of moderate size only.
"""

import numpy as np


def softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def kl(p, q):
  """KL(p || q) over the last axis, 0·log 0 = 0."""
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
  return terms.sum(axis=-1)


def jsd(p, q):
  m = 0.5 * (p + q)
  return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def jsd_reference_code(p, q):
  """The authors' ½[KL(M||P) + KL(M||Q)]."""
  m = 0.5 * (p + q)
  return 0.5 * kl(m, p) + 0.5 * kl(m, q)


def split(p, labels):
  """Binary [p_k, 1-p_k] and renormalised non-target p̂ (k-th column removed)."""
  n, c = p.shape
  pk = p[np.arange(n), labels]
  binary = np.stack([pk, 1.0 - pk], axis=-1)
  keep = np.ones_like(p, bool)
  keep[np.arange(n), labels] = False
  others = p[keep].reshape(n, c - 1)
  return binary, others / others.sum(axis=-1, keepdims=True)


def metrics(teacher_logits, student_logits, labels, temperature=1.0,
            form="paper"):
  """Dict of the five metrics (per sample, or batch mean·T² in reference form)."""
  pt = softmax(np.asarray(teacher_logits, np.float64) / temperature)
  ps = softmax(np.asarray(student_logits, np.float64) / temperature)
  bt, nt = split(pt, labels)
  bs, ns = split(ps, labels)
  js = jsd_reference_code if form == "reference_code" else jsd
  out = {"kl": kl(pt, ps), "tckl": kl(bt, bs), "nckl": kl(nt, ns),
         "tcjsd": js(bt, bs), "ncjsd": js(nt, ns),
         "teacher_nontarget_mass": bt[:, 1]}
  if form == "reference_code":
    out = {k: v.mean() * (1.0 if k == "teacher_nontarget_mass"
                          else temperature**2) for k, v in out.items()}
  return out
