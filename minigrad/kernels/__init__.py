"""Hand-written forward/backward kernels on raw arrays (NumPy or CuPy); no Tensor, no graph."""
