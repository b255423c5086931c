"""UCMKD's alignment terms: entropic optimal transport of features (FA) and
the label transport kernel with its label alignment (LA).

Tran et al., "Cross-Modal Knowledge Distillation without Paired Data", ICML
2026 (UCMKD); released PyTorch code Duckduck-05/UCMKD
(``ravdess/utils/helper.py``: ``pairwise_ot_cost``, ``_bilevel_step``,
``train_network_distill_unpair_sumall``). The student (modality S) and the
frozen teacher (modality T) see *unpaired* batches, so features are aligned
as distributions, not as pairs:

* **FA** (feature alignment), ``feature_alignment``: the entropic-OT
  transport cost ⟨P*, C⟩ between the student's batch features and the frozen
  teacher's, uniform weights, C_ij = c(z_Si, z_Tj) (``COSTS``), P* the
  Sinkhorn plan (``sinkhorn``), as the code's POT ``sinkhorn2`` (reg 0.1,
  100 iterations, cosine cost by default).
* **LA** (label alignment), ``label_alignment``: per example
  ℓ(h_S(z), y) − κ(y, z) · ℓ(h_T(z), y), z = φ_S(x) the student's features,
  h_S the student's head, h_T the frozen teacher's head applied to the
  *student's* features, κ the label transport kernel
  (``label_transport_kernel``): the paper's ratio D_T(y|z)/D_S(y|z) or the
  code's D_T(y|z).

Sinkhorn is ott-jax's (``ott.solvers.linear.sinkhorn.Sinkhorn``), in the log
domain, with an absolute ε (POT's ``reg``; ott's data-dependent default and
its relative ε are not used) and a fixed iteration count, differentiated by
unrolling the iterations: the bi-level training takes gradients through an
inner gradient step on FA, so FA must be twice differentiable, and its
gradient must be that of the plan computed, as PyTorch's autograd through
POT's loop gives (ott's default implicit differentiation differentiates the
converged fixed point instead). The iterations run as one block of ott's
loop: with several, ott 0.6's unrolled gradient is wrong (``_sinkhorn``).

Every function is pure and runs under ``jit`` and ``vmap`` (ε and
``max_ratio`` may be traced: a vmapped hyperparameter); arguments are
validated at the boundary (``ntdh_jax.validation``; traced values under its
``checked`` mode). Features and logits are computed in float32.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple
import warnings

import jax
import jax.numpy as jnp

from ntdh_jax import validation
from ntdh_jax.losses.feature import _l2_normalize
from ntdh_jax.losses.feature import _safe_sqrt
from ntdh_jax.losses.logit import reduce_loss
from ntdh_jax.losses.logit import smoothed_cross_entropy


@functools.cache
def _ott():
  """ott-jax's modules, imported on first use: importing ott takes about 2 s
  (it pulls in jaxopt, lineax, equinox), which every ``import
  ntdh_jax.losses`` would otherwise pay. ott 0.6 imports jaxopt, which warns
  that it is unmaintained: nothing a user of these losses can act on, so the
  warning is silenced around the import."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from ott.geometry import geometry
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn
  return geometry, linear_problem, sinkhorn


# -- ground costs ----------------------------------------------------------------


def _cosine(x, y):
  """1 − ⟨x̂, ŷ⟩, the code's ``1 - stu @ tea.T``."""
  return 1.0 - jnp.matmul(_l2_normalize(x), _l2_normalize(y).T,
                          precision=jax.lax.Precision.HIGHEST)


def _differences(x, y):
  """x_i − y_j, ``[B, B', D]``."""
  return x[:, None, :] - y[None, :, :]


def _l2(x, y):
  """‖x − y‖₂ (``cdist p=2``), with gradient 0 at coinciding rows."""
  return _safe_sqrt(jnp.sum(jnp.square(_differences(x, y)), axis=-1))


def _chordal(x, y):
  """‖x̂ − ŷ‖₂."""
  return _l2(_l2_normalize(x), _l2_normalize(y))


def _l1(x, y):
  """‖x − y‖₁ (``cdist p=1``)."""
  return jnp.sum(jnp.abs(_differences(x, y)), axis=-1)


def _sqeuclidean(x, y):
  """‖x − y‖², from the differences (never negative)."""
  return jnp.sum(jnp.square(_differences(x, y)), axis=-1)


COSTS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "cosine": _cosine,
    "chordal": _chordal,
    "l2": _l2,
    "l1": _l1,
    "sqeuclidean": _sqeuclidean,
}
"""The feature-alignment ground costs by name: each maps float32 ``[B, D]``
and ``[B', D]`` rows to the ``[B, B']`` matrix of c(x_i, y_j) (before
``cost_matrix``'s clamp at 0). x̂ = x / max(‖x‖, 1e-12) (torch's
``F.normalize``). The code's ``pairwise_ot_cost`` metrics: ``"cosine"``
1 − ⟨x̂, ŷ⟩ ∈ [0, 2] (its default), ``"chordal"`` ‖x̂ − ŷ‖₂ ∈ [0, 2],
``"l2"`` ‖x − y‖₂ and ``"l1"`` ‖x − y‖₁ (``cdist`` p = 2, 1); ours:
``"sqeuclidean"`` ‖x − y‖².

The norms are computed here from the ``[B, B', D]`` differences (B·B'·D
floats; cosine is one matmul) with a square root whose gradient is 0 at 0,
not by ott's cost functions: ott 0.6's ``Cosine`` divides by ‖x‖‖y‖ + 1e-8
with ``jnp.linalg.norm``, whose gradient is NaN at a zero row; its ``Euclidean`` (a custom-JVP norm) gave NaN
gradients for coinciding normalised rows under ``jit`` (the test suite's
``-O0`` build: a chordal cost of two equal rows); its ``SqEuclidean`` is
‖x‖² + ‖y‖² − 2⟨x, y⟩, which rounds below 0 for equal rows. The gradient
of a norm at a point where it is 0 (coinciding rows) is 0, as torch's
``cdist``. At an exact zero row the normalised costs' gradient is finite
but of order 1/1e-12, as torch's ``F.normalize``; the code clips the
gradient norm (5.0) before the step."""


# -- validation ----------------------------------------------------------------


def _check_clouds(x, y, names=("x", "y")):
  """Two floating ``[B, D]`` and ``[B', D]`` point clouds, B, B', D >= 1."""
  for name, z in zip(names, (x, y)):
    validation.check_rank(z, name, (2,), "[B, D]")
    validation.check_floating(z, name)
    if jnp.shape(z)[0] == 0:
      raise ValueError(f"{name} is an empty batch (shape {jnp.shape(z)}); "
                       "need at least one row.")
    if jnp.shape(z)[1] == 0:
      raise ValueError(f"{name} has D = 0 features; need D >= 1.")
  if jnp.shape(x)[1] != jnp.shape(y)[1]:
    raise ValueError(
        f"{names[0]} and {names[1]} must have the same feature width D (the "
        f"ground cost compares rows), got shapes {jnp.shape(x)} and "
        f"{jnp.shape(y)}.")


def _check_solver_args(cost, epsilon, iterations):
  validation.check_choice(cost, "cost", tuple(COSTS))
  validation.check_positive(epsilon, "epsilon")
  validation.check_positive_int(iterations, "iterations")


# -- cost matrix and Sinkhorn --------------------------------------------------


def _cost_matrix(x, y, cost: str):
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  c = COSTS[cost](x, y)
  # Every cost is >= 0 in exact arithmetic; cosine can round to −1e-7 for
  # (near-)parallel rows.
  return jnp.maximum(c, 0.0)


def cost_matrix(x, y, cost: str = "cosine") -> jax.Array:
  """The ground-cost matrix C_ij = c(x_i, y_j) of UCMKD's feature alignment.

  ``cost`` names an entry of ``COSTS`` (the code's ``pairwise_ot_cost``
  ``metric``): ``"cosine"`` 1 − ⟨x̂, ŷ⟩ (the code's default), ``"chordal"``
  ‖x̂ − ŷ‖₂, ``"l2"`` ‖x − y‖₂, ``"l1"`` ‖x − y‖₁, ``"sqeuclidean"``
  ‖x − y‖², with x̂ = x / max(‖x‖, 1e-12) (a zero row has cosine cost 1
  and chordal cost 1 to every unit row, with finite gradients). The matrix
  is clamped below at 0 (``max(C, 0)``), as the code's ``sumall`` does
  (its ``bilevel`` step does not): the costs are >= 0 in exact arithmetic,
  and the clamp removes only rounding (the cosine cost of parallel rows can
  come out around −1e-7 in float32).

  Args:
    x: ``f[B, D]``, e.g. the student's features.
    y: ``f[B', D]``, e.g. the teacher's features.
    cost: a name in ``COSTS``.

  Returns:
    ``f32[B, B']``.
  """
  _check_clouds(x, y)
  validation.check_choice(cost, "cost", tuple(COSTS))
  return _cost_matrix(x, y, cost)


class Transport(NamedTuple):
  """The result of ``sinkhorn`` (a pytree: it vmaps).

  Attributes:
    plan: ``f32[B, B']``, the entropic transport plan P (>= 0, sums to 1,
      marginals ≈ 1/B and 1/B').
    cost: ``f32[]``, ⟨P, C⟩ = Σ_ij P_ij C_ij, the transport cost of the plan
      (POT's ``sinkhorn2``; not ott's regularised cost, which adds the
      entropic term).
    marginal_error: ``f32[]``, ‖P 1 − a‖₁ + ‖Pᵀ 1 − b‖₁ with a = 1/B,
      b = 1/B' (how far the fixed iteration count is from convergence).
  """
  plan: jax.Array
  cost: jax.Array
  marginal_error: jax.Array


def _sinkhorn(c, epsilon, iterations: int) -> Transport:
  """ott-jax's log-domain Sinkhorn on the cost matrix ``c``, unrolled.

  ``inner_iterations = iterations``: ott runs ``max_iterations //
  inner_iterations`` blocks of ``inner_iterations`` iterations (so this count
  is exact) and checks the error once per block (here once, at the end).
  One block is also a correctness requirement: with ``min_iterations ==
  max_iterations`` ott 0.6's unrolled backward pass
  (``fixed_point_loop.fixpoint_iter_bwd``, its ``force_scan`` branch)
  starts its reverse scan at iteration 0 instead of the last block, so with
  more than one block it pulls back through the wrong stored states and the
  gradient is wrong (by 10 % to several-fold on small problems; the test
  compares with a hand-unrolled loop). From the single block's start it
  pulls back through that block's inner ``lax.scan`` by ordinary autodiff:
  exact, and differentiable again.
  """
  ott_geometry, ott_linear_problem, ott_sinkhorn = _ott()
  geom = ott_geometry.Geometry(
      cost_matrix=c, epsilon=jnp.asarray(epsilon, jnp.float32),
      relative_epsilon=None, scale_cost=1.0)
  problem = ott_linear_problem.LinearProblem(geom)  # uniform a, b
  solver = ott_sinkhorn.Sinkhorn(
      lse_mode=True, min_iterations=iterations, max_iterations=iterations,
      inner_iterations=iterations, implicit_diff=None)
  plan = solver(problem).matrix
  n, m = jnp.shape(c)
  error = (jnp.sum(jnp.abs(jnp.sum(plan, axis=1) - 1.0 / n))
           + jnp.sum(jnp.abs(jnp.sum(plan, axis=0) - 1.0 / m)))
  return Transport(plan, jnp.sum(plan * c), error)


def sinkhorn(x, y, *, cost: str = "cosine", epsilon=0.1,
             iterations: int = 100) -> Transport:
  """Entropic OT between two uniform point clouds, by a fixed-length Sinkhorn.

  Solves min_P ⟨P, C⟩ − ε H(P) subject to P 1 = a, Pᵀ 1 = b, a = 1/B,
  b = 1/B', C = ``cost_matrix(x, y, cost)`` (Cuturi, "Sinkhorn Distances",
  NeurIPS'13): POT's ``sinkhorn2(a, b, C, reg=ε)``, whose value is ⟨P, C⟩.
  The solver is ott-jax's ``Sinkhorn`` on a ``Geometry`` holding C with the
  absolute ε (``relative_epsilon=None``, ``scale_cost=1``), in the log domain
  (stable for small ε, where POT's standard-domain loop underflows), run for
  exactly ``iterations`` iterations (``min_iterations = max_iterations``: every
  call costs the same and the function vmaps), each one a column then a row
  update, as POT's. From ott's zero potentials the iterates are, in exact
  arithmetic, POT's from its uniform scalings (the plan is invariant to the
  scalings' constant factor), so the 100th plans agree to rounding; both
  converge to the same fixed point.

  Differentiation unrolls the iterations (ott's ``implicit_diff=None``), as
  PyTorch's autograd does through POT's loop: the gradient is that of the
  plan actually computed, not of the converged one, and it can be
  differentiated again (``jax.grad`` of a function containing ``jax.grad``).
  Reverse mode only: ott's loop is a ``custom_vjp``, so ``jax.jvp``,
  ``jax.jacfwd`` and ``jax.hessian`` (forward over reverse) raise; use
  ``jax.jacrev(jax.grad(...))`` or Hessian-vector products by reverse over
  reverse.

  Args:
    x: ``f[B, D]``.
    y: ``f[B', D]``.
    cost: a name in ``COSTS``; default ``"cosine"`` (the code's).
    epsilon: ε, the absolute entropic regularisation, a finite number > 0
      (may be traced). Default 0.1, the code's ``--ot_reg``.
    iterations: a static int >= 1. Default 100, the code's ``--ot_iter``.

  Returns:
    ``Transport(plan f32[B, B'], cost f32[], marginal_error f32[])``.
  """
  _check_clouds(x, y)
  _check_solver_args(cost, epsilon, iterations)
  return _sinkhorn(_cost_matrix(x, y, cost), epsilon, iterations)


FA_GRADIENTS = ("unrolled", "danskin")
"""How ``feature_alignment`` is differentiated: through the iterations (the
code's autograd through POT's loop), or with the plan held fixed."""


def feature_alignment(student_features, teacher_features, *,
                      cost: str = "cosine", epsilon=0.1,
                      iterations: int = 100,
                      gradient: str = "unrolled") -> jax.Array:
  """UCMKD's feature alignment FA: entropic W_c between the batch features.

  FA = ⟨P*, C⟩ with C_ij = c(z_Si, z_Tj) the ground cost between the
  student's features z_S = φ_S(x_S) and the frozen teacher's
  z_T = φ_T(x_T) of an unpaired other-modality batch, and P* the
  entropic plan with uniform marginals (``sinkhorn``): the paper's FA, a
  Sinkhorn estimate of the Wasserstein distance between φ_S#D_S and
  φ_T#D_T, as the code's ``ot.sinkhorn2(a, b, M, reg, numItermax)``. The
  teacher side is under ``stop_gradient``. C is clamped below at 0
  (``cost_matrix``), a no-op up to rounding.

  ``gradient`` (``FA_GRADIENTS``) says how the student features' gradient
  is taken. ``"unrolled"`` (default; the code's PyTorch autograd through
  POT's loop): through C and the unrolled Sinkhorn plan. ``"danskin"``: the
  plan is held fixed, ∇ = ⟨P*, ∂C⟩, which by the envelope (Danskin)
  theorem is the gradient of the entropic OT value min_P ⟨P, C⟩ − εH(P) at
  the converged plan; no derivative passes through the iterations, so it
  can be differentiated again everywhere. A second derivative through
  ott 0.6's unrolled loop can be NaN (its backward pass linearises the
  loop's error check too; e.g. a 64 × 64 cosine problem at the code's
  defaults, ``tests/test_losses_transport.py``), so a bi-level step that
  differentiates an inner FA step (``hypergrad="unrolled"``) uses
  ``"danskin"``.

  FA is biased: between identical clouds it is not 0 but the cost of the
  entropic plan's spread (it vanishes as ε → 0). The batch sizes may
  differ.

  Args:
    student_features: ``f[B, D]``, the student's batch features.
    teacher_features: ``f[B', D]``, the frozen teacher's batch features.
    cost: a name in ``COSTS``; default ``"cosine"`` (the code's).
    epsilon: ε > 0 (may be traced); default 0.1 (the code's).
    iterations: a static int >= 1; default 100 (the code's).
    gradient: ``"unrolled"`` or ``"danskin"``.

  Returns:
    ``f32[]``.
  """
  _check_clouds(student_features, teacher_features,
                names=("student_features", "teacher_features"))
  _check_solver_args(cost, epsilon, iterations)
  if gradient not in FA_GRADIENTS:
    raise ValueError(f"gradient must be one of {FA_GRADIENTS}, got "
                     f"{gradient!r}.")
  c = _cost_matrix(student_features,
                   jax.lax.stop_gradient(teacher_features), cost)
  if gradient == "unrolled":
    return _sinkhorn(c, epsilon, iterations).cost
  plan = _sinkhorn(jax.lax.stop_gradient(c), epsilon, iterations).plan
  return jnp.sum(plan * c)


# -- label transport kernel and label alignment ----------------------------------


KAPPAS = ("paper_ratio", "teacher_only")
"""The forms of ``label_transport_kernel``: the paper's, the released code's."""


def _check_head_logits(teacher_head_logits, student_logits, labels, where,
                       names=("teacher_head_logits", "student_logits")):
  validation.check_logits_pair(teacher_head_logits, student_logits,
                               min_classes=2, names=names)
  for name, z in zip(names, (teacher_head_logits, student_logits)):
    validation.check_rank(z, name, (2,), "[B, C]")
  n, c = jnp.shape(student_logits)
  validation.check_where(where, (n,))
  validation.check_labels(labels, (n,), c, where=where)


def _label_log_probs(logits, labels):
  """log softmax(logits)_y per row, ``f32[B]``."""
  log_p = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  return jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]


def label_transport_kernel(teacher_head_logits, student_logits, labels, *,
                           form: str = "paper_ratio",
                           max_ratio=10.0) -> jax.Array:
  """UCMKD's label transport kernel κ(y, z), without gradient.

  z = φ_S(x) are the student's features; ``teacher_head_logits`` = h_T(z),
  the frozen teacher's head on the student's features, ``student_logits``
  = h_S(z), the student's head on them.

  * ``"paper_ratio"`` (the paper's change of measure): κ = D_T(y|z) /
    D_S(y|z) = softmax(h_T(z))_y / softmax(h_S(z))_y, computed as
    exp(min(log p_T(y|z) − log p_S(y|z), log ``max_ratio``)). The clip
    above at ``max_ratio`` is **our choice** (the paper clips, but how is
    unknown): an under-confident student row (p_S(y|z) → 0) would otherwise
    get an unbounded weight and dominate the batch. κ → 0 where the teacher
    head gives the true class no mass; nothing clips it from below.
  * ``"teacher_only"`` (the released code): κ = softmax(h_T(z))_y, no
    division, in (0, 1] (0 only if that probability underflows float32);
    ``max_ratio`` is not applied.

  κ is a weight, not a path for gradients: the result is under
  ``stop_gradient`` (the code computes it under ``no_grad`` or
  ``.detach()``).

  Args:
    teacher_head_logits: ``f[B, C]``, h_T(z).
    student_logits: ``f[B, C]``, h_S(z).
    labels: ``int[B]`` in [0, C), the student examples' labels y.
    form: one of ``KAPPAS``; default ``"paper_ratio"``.
    max_ratio: the clip of ``"paper_ratio"``, a finite number > 0 (may be
      traced); default 10.

  Returns:
    ``f32[B]``.
  """
  _check_head_logits(teacher_head_logits, student_logits, labels, None)
  validation.check_choice(form, "form", KAPPAS)
  validation.check_positive(max_ratio, "max_ratio")
  labels = jnp.asarray(labels)
  log_t = _label_log_probs(jax.lax.stop_gradient(teacher_head_logits), labels)
  if form == "teacher_only":
    return jnp.exp(log_t)
  log_s = _label_log_probs(jax.lax.stop_gradient(student_logits), labels)
  log_max = jnp.log(jnp.asarray(max_ratio, jnp.float32))
  return jnp.exp(jnp.minimum(log_t - log_s, log_max))


def label_alignment(student_logits, teacher_head_logits, labels, kappa, *,
                    label_smoothing=0.0, where=None,
                    reduction: str = "none") -> jax.Array:
  """UCMKD's label alignment LA per example: ℓ(h_S(z), y) − κ · ℓ(h_T(z), y).

  ℓ is the cross-entropy with label smoothing as torch's
  ``cross_entropy(label_smoothing=s)``: target (1 − s)·onehot(y) + s/C
  (``optax.smooth_labels``, ``optax.softmax_cross_entropy``). ``kappa`` is
  used as given (pass ``label_transport_kernel``'s, which has no gradient);
  the gradient flows into both logit arrays, so the caller detaches what it
  does not train. LA can be negative.

  How the released code uses it (the sign to keep in mind):

  * ``bilevel`` (the method's LA step): the student head on detached
    features, label smoothing 0.1, and the teacher-head term computed under
    ``no_grad``: κ·ℓ_T is a constant and LA's gradient is that of the head's
    smoothed CE alone. Here: pass ``stop_gradient`` of the teacher-head
    logits (and of z into h_S), κ ``"teacher_only"``, ``label_smoothing=0.1``.
  * ``sumall`` (the single-level ablation): LA = NLL(log p_S − κ ⊙ log p_T,
    y) = −log p_S(y|z) + κ_y log p_T(y|z), κ = the detached teacher-head
    softmax: this function with ``"teacher_only"`` κ, ``label_smoothing=0``,
    and h_T(z) differentiated with respect to z. Its gradient in the
    teacher head's true-class logit is ∂LA/∂h_T(z)_y = κ (1 − p_T(y|z)) > 0
    (with smoothing s: κ (1 − s + s/C − p_T(y|z))): raising that logit
    raises LA, so minimising LA pushes the teacher-head likelihood of the
    true class **down** (it rewards student features that the frozen
    teacher head finds less likely to be of their class). The paper's LA has
    the same form and sign; whether the features should receive this
    gradient is the caller's choice (``stop_gradient`` on
    ``teacher_head_logits`` removes it).

  Args:
    student_logits: ``f[B, C]``, h_S(z).
    teacher_head_logits: ``f[B, C]``, h_T(z), the frozen teacher's head on
      the student's features.
    labels: ``int[B]`` in [0, C).
    kappa: ``f[B]``, κ(y_i, z_i).
    label_smoothing: s in [0, 1) (may be traced); default 0.
    where: optional ``bool[B]``; False marks padding (its rows may hold
      anything, NaN included; its loss is 0).
    reduction: ``"none"`` (default) → ``f32[B]``; ``"mean"`` → the mean over
      the valid examples, ``f32[]``.

  Returns:
    ``f32[B]`` or ``f32[]``.
  """
  _check_head_logits(teacher_head_logits, student_logits, labels, where,
                     names=("teacher_head_logits", "student_logits"))
  n = jnp.shape(student_logits)[0]
  validation.check_array(kappa, "kappa")
  validation.check_floating(kappa, "kappa")
  validation.check_shape(kappa, "kappa", (n,))
  validation.check_fraction(label_smoothing, "label_smoothing")
  validation.check_reduction(reduction)
  s_logits = jnp.asarray(student_logits, jnp.float32)
  t_logits = jnp.asarray(teacher_head_logits, jnp.float32)
  kappa = jnp.asarray(kappa, jnp.float32)
  labels = jnp.asarray(labels)
  if where is not None:
    valid = jnp.asarray(where)
    s_logits = jnp.where(valid[:, None], s_logits, 0.0)
    t_logits = jnp.where(valid[:, None], t_logits, 0.0)
    kappa = jnp.where(valid, kappa, 0.0)
    labels = jnp.where(valid, labels, 0)
  smoothing = jnp.asarray(label_smoothing, jnp.float32)
  per_example = (
      smoothed_cross_entropy(s_logits, labels, smoothing)
      - kappa * smoothed_cross_entropy(t_logits, labels, smoothing))
  return reduce_loss(per_example, where, reduction)
