"""The ops' own error messages: each names the argument, and the checks run before an empty input returns."""

from __future__ import annotations

import pytest
import torch


def test_op_level_errors_name_the_argument():
    ops = torch.ops.hoderiv_ext
    x = torch.ones(3)
    with pytest.raises(RuntimeError, match="unknown function 'nope'; the kernels serve: identity, tanh"):
        ops.elementwise_derivatives(x, "nope", [], 2)
    with pytest.raises(RuntimeError, match="'softplus' takes 2 parameter"):
        ops.elementwise_derivatives(x, "softplus", [1.0], 2)
    with pytest.raises(RuntimeError, match="x must be a float32 or float64"):
        ops.elementwise_derivatives(torch.ones(3, dtype=torch.int32), "tanh", [], 2)
    with pytest.raises(RuntimeError, match="order must be in \\[0, 8\\]"):
        ops.elementwise_derivatives(x, "tanh", [], -1)
    with pytest.raises(RuntimeError, match="grad must have shape"):
        ops.elementwise_derivatives_backward(torch.ones(2, 4), x, "tanh", [], 1)
    with pytest.raises(RuntimeError, match="coefficients must be a non-empty 1-D"):
        ops.polynomial_derivatives(x, torch.ones(2, 2), 2)
    empty = torch.ones(0)
    with pytest.raises(RuntimeError, match="unknown function 'nope'"):  # checked before the empty-input return
        ops.elementwise_derivatives(empty, "nope", [], 2)
    with pytest.raises(RuntimeError, match="unknown function 'nope'"):
        ops.elementwise_derivatives_backward(torch.ones(2, 0), empty, "nope", [], 1)
    with pytest.raises(RuntimeError, match="coefficients must be a non-empty 1-D"):
        ops.polynomial_derivatives(empty, torch.ones(0), 2)
    with pytest.raises(RuntimeError, match="grad must have shape"):
        ops.polynomial_derivatives_backward(torch.ones(2, 3), empty, torch.ones(2), 1)
    with pytest.raises(RuntimeError, match="coefficients must have x's dtype"):
        ops.polynomial_derivatives(x, torch.ones(2, dtype=torch.float64), 2)


def test_jet_op_errors_name_the_argument():
    ops = torch.ops.hoderiv_ext
    empty = torch.empty(0, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="jet must be a \\(N, S, m\\) jet"):
        ops.jet_activation(torch.ones(3, 4), None, "tanh", [], empty, empty, 2, True)
    with pytest.raises(RuntimeError, match="must have S = 1 \\+ d \\+ s = 4 slots"):
        ops.jet_activation(torch.ones(3, 5, 4), None, "tanh", [], empty, empty, 2, True)
    with pytest.raises(RuntimeError, match="pair 0 = \\(0, 7\\) out of range"):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], torch.tensor([0]), torch.tensor([7]), 2, False)
    with pytest.raises(RuntimeError, match="bias must have shape \\(m,\\)"):
        ops.jet_activation(torch.ones(3, 4, 4), torch.ones(3), "tanh", [], empty, empty, 2, True)
    with pytest.raises(RuntimeError, match="pair_i and pair_j must be int64"):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], torch.tensor([0.0]), torch.tensor([1.0]), 2, False)
    with pytest.raises(RuntimeError, match="weight must be \\(m, d\\)"):
        ops.jet_activation_first(torch.ones(3, 4), torch.ones(5, 2), "tanh", [], empty, empty, True)
    with pytest.raises(RuntimeError, match="grad must be the output jet's gradient"):
        ops.jet_activation_first_backward(torch.ones(2, 4, 4), torch.ones(3, 4), torch.ones(4, 2), "tanh", [],
                                          empty, empty, True)
    with pytest.raises(RuntimeError, match="grad must have S = 1 \\+ d \\+ s = 4 slots"):
        ops.jet_activation_first_backward(torch.ones(3, 5, 4), torch.ones(3, 4), torch.ones(4, 2), "tanh", [],
                                          empty, empty, True)
    with pytest.raises(RuntimeError, match="grad must have the preactivation's dtype"):
        ops.jet_activation_first_backward(torch.ones(3, 4, 4, dtype=torch.float64), torch.ones(3, 4),
                                          torch.ones(4, 2), "tanh", [], empty, empty, True)


@pytest.mark.parametrize("n", [0, 3])
def test_jet_ops_reject_an_unknown_function_for_every_batch_size(n):
    """An empty batch returns early, but not before the function name is checked."""
    ops = torch.ops.hoderiv_ext
    empty = torch.empty(0, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation(torch.ones(n, 4, 4), None, "tahn", [], empty, empty, 2, True)
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation_backward(torch.ones(n, 4, 4), torch.ones(n, 4, 4), None, "tahn", [], empty, empty, 2, True)
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation_first(torch.ones(n, 4), torch.ones(4, 2), "tahn", [], empty, empty, True)
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation_first_backward(torch.ones(n, 4, 4), torch.ones(n, 4), torch.ones(4, 2), "tahn", [],
                                          empty, empty, True)
