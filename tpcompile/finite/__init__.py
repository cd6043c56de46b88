"""The same IR at finite width: the network and its empirical kernels (`network.py`), and the
statistics of `tpcompile verify` (`verify.py`)."""
