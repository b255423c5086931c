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


# -- CMCD (Lin et al., arXiv 2405.03355; reconstructed formulas) ---------------
# Plain exponentials of cosine / τ: use temperatures >= 0.002 (exp overflows
# float64 past e^709).


def _unit_rows(x):
  """Each row over its Euclidean norm (rows must be nonzero)."""
  x = np.asarray(x, np.float64)
  out = np.zeros_like(x)
  for i in range(len(x)):
    out[i] = x[i] / np.sqrt(np.sum(x[i] ** 2))
  return out


def _valid_rows(n, where):
  return [True] * n if where is None else [bool(w) for w in where]


def simclr_ref(z1, z2, temperature):
  """SimCLR's NT-Xent (Chen et al. 2020, Eq. 1), the mean over 2N anchors."""
  z = _unit_rows(np.concatenate([z1, z2]))
  n2 = len(z)
  n = n2 // 2
  total = 0.0
  for a in range(n2):
    positive = (a + n) % n2
    denominator = 0.0
    for k in range(n2):
      if k != a:
        denominator += np.exp(z[a] @ z[k] / temperature)
    total += -np.log(np.exp(z[a] @ z[positive] / temperature) / denominator)
  return total / n2


def cmd_ref(target_emb, source_emb, anchors=None, anchor_where=None,
            tau_source=0.01, tau_target=0.2, where=None):
  """Per-example −Σ_j p_i(j) log q_i(j) over the valid anchors (the valid
  batch's unit source rows, then the filled extra anchors); 0 for masked
  examples."""
  n = len(source_emb)
  valid = _valid_rows(n, where)
  z_a = _unit_rows(source_emb)
  z_b = _unit_rows(target_emb)
  bank = [z_a[j] for j in range(n) if valid[j]]
  if anchors is not None:
    filled = _valid_rows(len(anchors), anchor_where)
    extra = np.asarray(anchors, np.float64)
    bank += [extra[k] / np.sqrt(np.sum(extra[k] ** 2))
             for k in range(len(extra)) if filled[k]]
  out = np.zeros(n)
  for i in range(n):
    if not valid[i]:
      continue
    e_a = np.array([np.exp(z_a[i] @ a / tau_source) for a in bank])
    e_b = np.array([np.exp(z_b[i] @ a / tau_target) for a in bank])
    p, q = e_a / e_a.sum(), e_b / e_b.sum()
    out[i] = -sum(p[j] * np.log(q[j]) for j in range(len(bank)) if p[j] > 0)
  return out


def cmc_ref(target_emb, source_emb, temperature, where=None):
  """Per-example CLIP loss: the mean of −log softmax(row i)_i of the B → A
  and of the A → B similarities, over the valid examples; 0 when masked."""
  n = len(source_emb)
  valid = _valid_rows(n, where)
  z_a = _unit_rows(source_emb)
  z_b = _unit_rows(target_emb)
  out = np.zeros(n)
  for i in range(n):
    if not valid[i]:
      continue
    b_to_a = sum(np.exp(z_b[i] @ z_a[j] / temperature)
                 for j in range(n) if valid[j])
    a_to_b = sum(np.exp(z_a[i] @ z_b[j] / temperature)
                 for j in range(n) if valid[j])
    positive = np.exp(z_b[i] @ z_a[i] / temperature)
    out[i] = -0.5 * (np.log(positive / b_to_a) + np.log(positive / a_to_b))
  return out


def align_l2_ref(target_emb, source_emb):
  """Per-example Σ_d (b_d − a_d)² / D."""
  b = np.asarray(target_emb, np.float64)
  a = np.asarray(source_emb, np.float64)
  return np.array([np.sum((b[i] - a[i]) ** 2) / b.shape[1]
                   for i in range(len(b))])


def align_cosine_ref(target_emb, source_emb):
  """Per-example 1 − bᵀa / (‖b‖ ‖a‖)."""
  b = np.asarray(target_emb, np.float64)
  a = np.asarray(source_emb, np.float64)
  return np.array([1.0 - b[i] @ a[i] / (np.linalg.norm(b[i])
                                         * np.linalg.norm(a[i]))
                   for i in range(len(b))])
