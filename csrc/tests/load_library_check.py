"""ctest: the CMake-built op library loads with torch.ops.load_library and computes.

Usage: python load_library_check.py path/to/libhoderiv_ext_ops.so
Checks tanh's (y, y', y'') against closed forms in float64.
"""

import sys

import torch

torch.ops.load_library(sys.argv[1])
x = torch.linspace(-3, 3, 101, dtype=torch.float64)
y, dy, d2y = torch.ops.hoderiv_ext.elementwise_derivatives(x, "tanh", [], 2)
t = torch.tanh(x)
errors = [(y - t).abs().max().item(), (dy - (1 - t**2)).abs().max().item(), (d2y + 2 * t * (1 - t**2)).abs().max().item()]
assert max(errors) < 1e-14, errors
print("load_library: ok, max error", max(errors))
