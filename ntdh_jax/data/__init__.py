"""Data for the reproduced experiments; import the submodules explicitly.

* ``ntdh_jax.data.synthetic`` — the NTDH and MFH synthetic teacher/student
  views with a tunable domain gap (JAX-keyed, and exact reference-code mode).
"""
