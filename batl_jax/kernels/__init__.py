"""Pure jitted array kernels over the pool; memory never N×N nor N×(C·d)."""
