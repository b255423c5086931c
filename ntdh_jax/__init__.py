"""ntdh_jax: cross-modal knowledge distillation analyses in JAX."""

__version__ = "0.1.0"
