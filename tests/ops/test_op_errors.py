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
    with pytest.raises(RuntimeError, match="jet must be a \\(N, S, m\\) jet"):
        ops.jet_activation(torch.ones(3, 4), None, "tanh", [], 2, [], [], [0, 1])
    with pytest.raises(RuntimeError, match="must have S = 1 \\+ t \\+ p \\+ c = 1 \\+ 2 \\+ 0 \\+ 1 = 4 slots"):
        ops.jet_activation(torch.ones(3, 5, 4), None, "tanh", [], 2, [], [], [0, 1])
    with pytest.raises(RuntimeError, match="pair 0 = \\(0, 7\\) out of range"):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], 2, [0], [7], [])
    with pytest.raises(RuntimeError, match="pair_i and pair_j must have one length"):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], 2, [0], [], [])
    with pytest.raises(RuntimeError, match="collapsed lists tangent 1 more than once"):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], 2, [], [], [1, 1])
    with pytest.raises(RuntimeError, match="collapsed\\[0\\] = 5"):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], 2, [], [], [5])
    with pytest.raises(RuntimeError, match="num_tangents must be in \\[0, "):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], -1, [], [], [])
    with pytest.raises(RuntimeError, match="bias must have shape \\(m,\\)"):
        ops.jet_activation(torch.ones(3, 4, 4), torch.ones(3), "tanh", [], 2, [], [], [0, 1])
    with pytest.raises(RuntimeError, match="bias must have jet's dtype"):
        ops.jet_activation(torch.ones(3, 4, 4), torch.ones(4, dtype=torch.float64), "tanh", [], 2, [], [], [0, 1])
    with pytest.raises(RuntimeError, match="weight must be \\(m, t\\)"):
        ops.jet_activation_first(torch.ones(3, 4), torch.ones(5, 2), "tanh", [], [], [], [0, 1])
    with pytest.raises(RuntimeError, match="grad must be the output jet's gradient"):
        ops.jet_activation_first_backward(torch.ones(2, 4, 4), torch.ones(3, 4), torch.ones(4, 2), "tanh", [],
                                          [], [], [0, 1])
    with pytest.raises(RuntimeError, match="preactivation must have grad's dtype"):
        ops.jet_activation_first_backward(torch.ones(3, 4, 4, dtype=torch.float64), torch.ones(3, 4),
                                          torch.ones(4, 2), "tanh", [], [], [], [0, 1])


@pytest.mark.parametrize("huge", [2**62, 2**63 - 1])
def test_integer_arguments_are_checked_before_any_arithmetic(huge):
    """Regression: shift = 2**63 - 1 wrapped m + shift negative, passed the order check and read past a buffer."""
    ops = torch.ops.hoderiv_ext
    with pytest.raises(RuntimeError, match="shift must be in \\[0, 8\\]"):
        ops.elementwise_derivatives_backward(torch.ones(3, 4), torch.ones(4), "tanh", [], huge)
    with pytest.raises(RuntimeError, match="shift must be in \\[0, 8\\]"):
        ops.polynomial_derivatives_backward(torch.ones(3, 4), torch.ones(4), torch.ones(3), huge)
    with pytest.raises(RuntimeError, match="order must be in \\[0, 8\\]"):
        ops.elementwise_derivatives(torch.ones(4), "tanh", [], huge)
    with pytest.raises(RuntimeError, match="out of range"):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], 2, [huge], [0], [])
    with pytest.raises(RuntimeError, match="num_tangents must be in"):
        ops.jet_activation(torch.ones(3, 4, 4), None, "tanh", [], huge, [], [], [])


def test_mixed_devices_are_refused_by_every_op_naming_the_arguments():
    """Regression: a meta tensor among CPU tensors reached the fake kernel and returned uninitialised memory."""
    ops = torch.ops.hoderiv_ext
    meta = {"device": "meta"}
    with pytest.raises(RuntimeError, match="bias is on meta but jet is on cpu"):
        ops.jet_activation(torch.ones(3, 4, 4), torch.ones(4, **meta), "tanh", [], 2, [], [], [0, 1])
    with pytest.raises(RuntimeError, match="weight is on meta but preactivation is on cpu"):
        ops.jet_activation_first(torch.ones(3, 4), torch.ones(4, 2, **meta), "tanh", [], [], [], [0, 1])
    with pytest.raises(RuntimeError, match="on meta"):
        ops.elementwise_derivatives_backward(torch.ones(3, 4), torch.ones(4, **meta), "tanh", [], 1)
    with pytest.raises(RuntimeError, match="on meta"):
        ops.polynomial_derivatives(torch.ones(4), torch.ones(3, **meta), 2)


@pytest.mark.parametrize("n", [0, 3])
def test_jet_ops_reject_an_unknown_function_for_every_batch_size(n):
    """An empty batch returns early, but not before the function name is checked."""
    ops = torch.ops.hoderiv_ext
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation(torch.ones(n, 4, 4), None, "tahn", [], 2, [], [], [0, 1])
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation_backward(torch.ones(n, 4, 4), torch.ones(n, 4, 4), None, "tahn", [], 2, [], [], [0, 1])
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation_first(torch.ones(n, 4), torch.ones(4, 2), "tahn", [], [], [], [0, 1])
    with pytest.raises(RuntimeError, match="unknown function 'tahn'"):
        ops.jet_activation_first_backward(torch.ones(n, 4, 4), torch.ones(n, 4), torch.ones(4, 2), "tahn", [],
                                          [], [], [0, 1])
