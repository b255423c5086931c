"""``jit`` for tests that compile many small programs.

Those programs run for milliseconds; XLA:CPU's legacy emitters and LLVM at
-O0 cut their compile time 3–10× (a vmapped random init: 7 s -> 0.5 s).
Comparisons in a test are always between programs compiled with the same
options.
"""

import functools

import jax

FAST_COMPILE = {"xla_backend_optimization_level": 0,
                "xla_llvm_disable_expensive_passes": True,
                "xla_cpu_use_fusion_emitters": False}
fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)
