"""Test configuration, for every test module.

- Kernels and references in float64 unless a test asks for float32: the float32 tests scope
  their precision with `jax.enable_x64(False)`, so this global default holds everywhere else.
- Every program elaborated by any test is checked against the IR's invariants (`ir/check.py`),
  so a front-end change that breaks one fails where it is made.
- The CLI's persistent JAX compilation cache is off (`TPCOMPILE_NO_CACHE=1`): tests never write
  into the user's cache folder; the cache's own tests point it at a temporary folder.
"""

import os

import jax

import tpcompile.lang.frontend

os.environ["TPCOMPILE_NO_CACHE"] = "1"
jax.config.update("jax_enable_x64", True)
tpcompile.lang.frontend.CHECK_IR = True
