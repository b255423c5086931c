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
  """Dict of the five metrics: per sample (``"paper"``, and
  ``"reference_order"`` with the authors' JSD), or the batch mean·T²
  (``"reference_code"``)."""
  pt = softmax(np.asarray(teacher_logits, np.float64) / temperature)
  ps = softmax(np.asarray(student_logits, np.float64) / temperature)
  bt, nt = split(pt, labels)
  bs, ns = split(ps, labels)
  js = jsd if form == "paper" else jsd_reference_code
  out = {"kl": kl(pt, ps), "tckl": kl(bt, bs), "nckl": kl(nt, ns),
         "tcjsd": js(bt, bs), "ncjsd": js(nt, ns),
         "teacher_nontarget_mass": bt[:, 1]}
  if form == "reference_code":
    out = {k: v.mean() * (1.0 if k == "teacher_nontarget_mass"
                          else temperature**2) for k, v in out.items()}
  return out


def metrics_where(teacher_logits, student_logits, labels, where,
                  temperature=1.0, form="paper"):
  """``metrics`` of ``[..., C]`` logits with a validity mask ``where``.

  Only the valid entries are computed (their labels must lie in [0, C)); in
  paper form every metric has the leading shape with 0 at invalid entries, in
  reference form it is the mean over the valid entries (0 if none).
  """
  t = np.asarray(teacher_logits, np.float64)
  s = np.asarray(student_logits, np.float64)
  shape, c = t.shape[:-1], t.shape[-1]
  valid = np.asarray(where, bool).reshape(-1)
  y = np.asarray(labels).reshape(-1)[valid]
  names = ("kl", "tckl", "nckl", "tcjsd", "ncjsd", "teacher_nontarget_mass")
  if not valid.any():
    zero = 0.0 if form == "reference_code" else np.zeros(shape)
    return {k: zero for k in names}
  got = metrics(t.reshape(-1, c)[valid], s.reshape(-1, c)[valid], y,
                temperature, form=form)
  if form == "reference_code":
    return got
  out = {}
  for k in names:
    full = np.zeros(valid.shape)
    full[valid] = got[k]
    out[k] = full.reshape(shape)
  return out


def permutation_importance(score, x, permutation, num_repeats):
  """Algorithm 1 as the plain double loop, in float64.

  ``score(x) -> [N]`` per-example scores of a whole (permuted) input;
  ``permutation(m, j) -> int[N]`` the row order used for unit j in repeat m.
  A unit is a column of ``[N, D]`` input or a position (all channels) of
  ``[N, ..., C]``. Returns ``[M, D]`` or ``[M, ..., 1]`` mean scores.
  """
  x = np.asarray(x, np.float64)
  n = x.shape[0]
  if x.ndim == 2:
    units, unit_shape = x[:, :, None], (x.shape[1],)
  else:
    units = x.reshape(n, -1, x.shape[-1])
    unit_shape = (*x.shape[1:-1], 1)
  out = np.zeros((num_repeats, units.shape[1]))
  for m in range(num_repeats):
    for j in range(units.shape[1]):
      permuted = units.copy()
      permuted[:, j, :] = units[np.asarray(permutation(m, j)), j, :]
      out[m, j] = np.mean(score(permuted.reshape(x.shape)))
  return out.reshape(num_repeats, *unit_shape)


def confusion_matrix(predicted, labels, num_classes, where=None):
  """Counts of (true, predicted) pairs by an explicit loop; rows = truth."""
  predicted, labels = np.ravel(predicted), np.ravel(labels)
  where = np.ones(labels.shape, bool) if where is None else np.ravel(where)
  out = np.zeros((num_classes, num_classes), np.int64)
  for p, y, ok in zip(predicted, labels, where):
    if ok:
      out[y, p] += 1
  return out


def mean_iou(confusion):
  """Mean over classes with TP + FP + FN > 0 of TP / (TP + FP + FN)."""
  confusion = np.asarray(confusion, np.float64)
  ious = []
  for c in range(len(confusion)):
    tp = confusion[c, c]
    fp = confusion[:, c].sum() - tp
    fn = confusion[c, :].sum() - tp
    if tp + fp + fn > 0:
      ious.append(tp / (tp + fp + fn))
  return np.mean(ious) if ious else np.nan
