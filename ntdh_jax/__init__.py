"""ntdh_jax: cross-modal knowledge distillation analyses in JAX."""

from ntdh_jax.validation import checked

__version__ = "0.1.0"
__all__ = ["Diagnosis", "checked", "diagnose"]


def __getattr__(name):
  # The advisor pulls in the MI estimators: imported when first asked for.
  if name in ("diagnose", "Diagnosis"):
    from ntdh_jax import advisor
    return getattr(advisor, name)
  raise AttributeError(f"module 'ntdh_jax' has no attribute {name!r}")
