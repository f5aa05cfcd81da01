"""The elementwise ops under torch.library.opcheck on every device, and torch.compile(fullgraph=True) through them.

opcheck exercises each op's schema, fake kernel (ops/fake.py) and autograd registration
(elementwise_derivatives: the C++ kernel of csrc/ops/autograd.cpp; the others: ops/formulas.py);
the compiled loss and its gradients must equal eager mode.
"""

from __future__ import annotations

import pytest
import torch

from hoderiv_ext import Polynomial, elementwise_derivatives

from conftest import DEVICES


ELEMENTWISE_OP_CASES = [
    "elementwise_derivatives-tanh",
    "elementwise_derivatives-softplus",
    "elementwise_derivatives_backward-gelu_tanh",
    "polynomial_derivatives",
    "polynomial_derivatives_backward",
]


def _op_samples(device: str) -> dict[str, tuple]:
    """(op, args) for every case of ELEMENTWISE_OP_CASES, its tensors on ``device``."""
    x = torch.randn(4, 3, dtype=torch.float64, device=device, requires_grad=True)
    coefficients = torch.randn(4, dtype=torch.float64, device=device, requires_grad=True)
    grad = torch.randn(3, 4, 3, dtype=torch.float64, device=device, requires_grad=True)
    ops = torch.ops.hoderiv_ext
    samples = {
        "elementwise_derivatives-tanh": (ops.elementwise_derivatives.default, (x, "tanh", [], 2)),
        "elementwise_derivatives-softplus": (ops.elementwise_derivatives.default, (x, "softplus", [2.0, 10.0], 3)),
        "elementwise_derivatives_backward-gelu_tanh":
            (ops.elementwise_derivatives_backward.default, (grad, x, "gelu_tanh", [], 1)),
        "polynomial_derivatives": (ops.polynomial_derivatives.default, (x, coefficients, 3)),
        "polynomial_derivatives_backward": (ops.polynomial_derivatives_backward.default, (grad, x, coefficients, 1)),
    }
    assert list(samples) == ELEMENTWISE_OP_CASES
    return samples


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ELEMENTWISE_OP_CASES)
def test_opcheck(case, device):
    op, args = _op_samples(device)[case]
    torch.library.opcheck(op, args)


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def loss_fn(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        y, dy, d2y = elementwise_derivatives("tanh", x, 2, backend="kernel")
        p, dp, _ = elementwise_derivatives(Polynomial(c), x, 2, backend="kernel")
        return (y * dy + d2y**2 + p * dp).sum()

    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    x = torch.randn(16, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, dtype=torch.float64, requires_grad=True)
    eager_grads = torch.autograd.grad(loss_fn(x, c), (x, c))
    compiled_loss = compiled(x, c)
    torch.testing.assert_close(compiled_loss, loss_fn(x, c))
    for a, b in zip(torch.autograd.grad(compiled_loss, (x, c)), eager_grads):
        torch.testing.assert_close(a, b)
