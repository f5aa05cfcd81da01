"""ctest: the CMake-built op library loads with torch.ops.load_library and computes.

Usage: python load_library_check.py path/to/libhoderiv_ext_ops.so
Checks tanh's (y, y', y'') against closed forms in float64, and a first-order gradient through
the forward op's C++ autograd kernel (csrc/ops/autograd.cpp), which needs no Python package.
"""

import sys

import torch

torch.ops.load_library(sys.argv[1])
x = torch.linspace(-3, 3, 101, dtype=torch.float64)
y, dy, d2y = torch.ops.hoderiv_ext.elementwise_derivatives(x, "tanh", [], 2)
t = torch.tanh(x)
errors = [(y - t).abs().max().item(), (dy - (1 - t**2)).abs().max().item(), (d2y + 2 * t * (1 - t**2)).abs().max().item()]
assert max(errors) < 1e-14, errors
x.requires_grad_(True)
values = torch.ops.hoderiv_ext.elementwise_derivatives(x, "tanh", [], 1)
assert "CppNode" in values.grad_fn.name(), values.grad_fn.name()
(grad_x,) = torch.autograd.grad(values[0].sum(), x)
errors.append((grad_x - (1 - t**2)).abs().max().item())
assert max(errors) < 1e-14, errors
print("load_library: ok, max error", max(errors))
