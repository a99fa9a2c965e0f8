"""What exists only for a CPU: the BLAS preload and allocator setting, the fast-exp kernels and
dequantised compute. Nothing here changes the Metal path."""
