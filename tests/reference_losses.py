"""Float64 NumPy references of the KD losses, written from the papers' formulas.

Deliberately naive (probabilities rather than logs, explicit loops over pairs
and triplets) so they share no code path with ``ntdh_jax.losses``; use them on
small, moderate inputs only. Every function here is per the formula cited in
``ntdh_jax.losses`` and never calls JAX.
"""

import numpy as np


def softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def kl_rows(p, q):
  """KL(p || q) per row, with 0 · log 0 = 0."""
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(p > 0, p * np.log(p / q), 0.0)
  return terms.sum(axis=-1)


def kd(student_logits, teacher_logits, temperature):
  """Per-example KL(softmax(t/T) || softmax(s/T)) · T²."""
  p_t = softmax(np.asarray(teacher_logits, np.float64) / temperature)
  p_s = softmax(np.asarray(student_logits, np.float64) / temperature)
  return kl_rows(p_t, p_s) * temperature**2


def _target_and_rest(p, labels):
  """Binary [p_k, 1 − p_k] and the renormalised other C − 1 probabilities."""
  rows = []
  rests = []
  for row, k in zip(p, labels):
    rows.append([row[k], row.sum() - row[k]])
    rest = np.delete(row, k)
    rests.append(rest / rest.sum())
  return np.array(rows), np.array(rests)


def dkd(student_logits, teacher_logits, labels, alpha, beta, temperature):
  """Per-example (α · TCKL + β · NCKL) · T²."""
  p_t = softmax(np.asarray(teacher_logits, np.float64) / temperature)
  p_s = softmax(np.asarray(student_logits, np.float64) / temperature)
  b_t, n_t = _target_and_rest(p_t, labels)
  b_s, n_s = _target_and_rest(p_s, labels)
  return (alpha * kl_rows(b_t, b_s)
          + beta * kl_rows(n_t, n_s)) * temperature**2


def _flat(x):
  x = np.asarray(x, np.float64)
  return x.reshape(len(x), -1)


def fitnet(student_features, teacher_features):
  """Per-example mean squared error."""
  return ((_flat(student_features) - _flat(teacher_features))**2).mean(axis=1)


def smooth_l1(a, b):
  x = np.abs(np.asarray(a) - np.asarray(b))
  return np.where(x < 1.0, 0.5 * x**2, x - 0.5)


def _rkd_distances(f):
  n = len(f)
  d = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      d[i, j] = np.sqrt(np.sum((f[i] - f[j])**2))
  return d / (d.sum() / (n * (n - 1)))


def _rkd_angles(f):
  n = len(f)
  a = np.zeros((n, n, n))
  for i in range(n):
    for j in range(n):
      for k in range(n):
        if j == i or k == i:
          continue  # a zero difference vector: cosine taken as 0
        u, v = f[j] - f[i], f[k] - f[i]
        a[i, j, k] = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
  return a


def rkd(student_features, teacher_features, distance_weight, angle_weight):
  s, t = _flat(student_features), _flat(teacher_features)
  distance = smooth_l1(_rkd_distances(s), _rkd_distances(t)).mean()
  angle = smooth_l1(_rkd_angles(s), _rkd_angles(t)).mean()
  return distance_weight * distance + angle_weight * angle


def _pkt_probabilities(f, eps):
  f = f / (np.linalg.norm(f, axis=1, keepdims=True) + eps)
  k = (f @ f.T + 1.0) / 2.0
  return k / k.sum(axis=1, keepdims=True)


def pkt(student_features, teacher_features, eps=1e-7):
  q = _pkt_probabilities(_flat(student_features), eps)
  p = _pkt_probabilities(_flat(teacher_features), eps)
  return np.mean(p * np.log((p + eps) / (q + eps)))


def sp(student_features, teacher_features):
  def gram(f):
    g = f @ f.T
    return g / np.linalg.norm(g, axis=1, keepdims=True)
  s, t = _flat(student_features), _flat(teacher_features)
  n = len(s)
  return np.sum((gram(t) - gram(s))**2) / n**2


def crd(student_memory, teacher_memory, z_student, z_teacher, student_embed,
        teacher_embed, indices, contrast_indices, nce_t, momentum,
        eps=1e-7):
  """CRD loss and the next (memories, Zs), from the paper's Eq. 18.

  Returns ``(loss, student_memory, teacher_memory, z_student, z_teacher)``.
  """
  mem_s = np.array(student_memory, np.float64)
  mem_t = np.array(teacher_memory, np.float64)
  v_s = np.asarray(student_embed, np.float64)
  v_t = np.asarray(teacher_embed, np.float64)
  n_data = len(mem_s)
  n, k_plus_1 = contrast_indices.shape
  k = k_plus_1 - 1
  noise = k / n_data

  def side(anchor, memory, z):
    out = np.exp(np.einsum("nkd,nd->nk", memory[contrast_indices], anchor)
                 / nce_t)
    if z < 0:
      z = out.mean() * n_data
    prob = out / z
    total = 0.0
    for i in range(n):
      total += np.log(prob[i, 0] / (prob[i, 0] + noise + eps))
      for j in range(1, k_plus_1):
        total += np.log(noise / (prob[i, j] + noise + eps))
    return -total / n, z

  loss_s, z_s = side(v_s, mem_t, z_student)
  loss_t, z_t = side(v_t, mem_s, z_teacher)
  new_s, new_t = mem_s.copy(), mem_t.copy()
  for row, i in enumerate(indices):
    for new, old, v in ((new_s, mem_s, v_s), (new_t, mem_t, v_t)):
      mixed = momentum * old[i] + (1.0 - momentum) * v[row]
      new[i] = mixed / np.linalg.norm(mixed)
  return loss_s + loss_t, new_s, new_t, z_s, z_t


def authors_hint(student_logits, teacher_logits, eps=1e-5):
  """Per-example FitNet hint of the NTDH authors' ``train_kd`` on logits:
  the mean over classes of (ReLU(BN(s)) − t)², BN a fresh ``BatchNorm1d``
  in training mode (the batch's mean and biased variance, γ = 1, β = 0)."""
  s = np.asarray(student_logits, np.float64)
  t = np.asarray(teacher_logits, np.float64)
  bn = (s - s.mean(axis=0)) / np.sqrt(s.var(axis=0) + eps)
  return ((np.maximum(bn, 0.0) - t)**2).mean(axis=1)
