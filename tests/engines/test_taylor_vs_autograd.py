"""The Taylor engine (backend="kernel") against the autograd engine, field by field.

Every activation and request, vector outputs and batch sizes 0, 1 and 257, a point, scalar inputs
and non-contiguous x, and the CUDA kernels against the CPU kernels.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext import derivatives

from conftest import ACTIVATIONS, DEVICES, DTYPES, REQUESTS, assert_engines_agree, make_mlp, needs_cuda, result_fields


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: type(a()).__name__ + str(getattr(a(), "approximate", "")))
def test_every_activation_and_request(activation, hessian, dtype, device):
    net = make_mlp(4, [16, 12], 1, activation, dtype, device)
    x = torch.randn(33, 4, dtype=dtype, device=device)
    assert_engines_agree(net, x, hessian)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
def test_vector_outputs_and_batch_sizes(hessian, device):
    net = make_mlp(3, [8, 8, 8], 3, nn.Tanh, torch.float64, device)
    for n in (0, 1, 257):
        x = torch.randn(n, 3, dtype=torch.float64, device=device)
        assert_engines_agree(net, x, hessian)


def test_layouts_single_point_scalar_inputs_and_noncontiguous():
    net = make_mlp(1, [8], 1, nn.Sigmoid, torch.float64, "cpu")
    assert_engines_agree(net, torch.tensor([2.0], dtype=torch.float64), "full")  # a point (d,)
    assert_engines_agree(net, torch.linspace(-1, 1, 7, dtype=torch.float64), "laplacian")  # (N,) scalars
    net3 = make_mlp(3, [8], 2, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(3, 10, dtype=torch.float64).t()  # (10, 3), non-contiguous
    assert not x.is_contiguous()
    assert_engines_agree(net3, x, "full")
    assert_engines_agree(net3, torch.randn(20, 3, dtype=torch.float64)[::2], [2])


@needs_cuda
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
def test_cuda_kernels_match_cpu_kernels(hessian):
    net = make_mlp(5, [32, 32], 2, nn.Tanh, torch.float64, "cpu")
    x = torch.randn(100, 5, dtype=torch.float64)
    cpu = derivatives(net, x, hessian=hessian, backend="kernel")
    gpu = derivatives(net.cuda(), x.cuda(), hessian=hessian, backend="kernel")
    for a, b in zip(result_fields(cpu), result_fields(gpu)):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-12, atol=1e-12)
