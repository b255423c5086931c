"""ntdh_jax: cross-modal knowledge distillation analyses in JAX."""

from ntdh_jax.validation import checked

__version__ = "0.1.0"
__all__ = ["checked"]
