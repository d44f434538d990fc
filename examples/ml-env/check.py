"""Proves the environment works: numpy imports and computes."""
import numpy as np

m = np.arange(12, dtype=np.float64).reshape(3, 4)
print(f"numpy {np.__version__}: sum={m.sum():.0f} det={np.linalg.det(np.eye(3) * 2):.0f}")
