"""Stage 4: the kernel graph printed as a readable JAX module (`module.py`), with the sympy ->
JAX printer (`jaxprint.py`) and the derivation printer for `tpcompile show` (`show.py`)."""
