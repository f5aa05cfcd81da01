"""Fake kernels and autograd formulas for the Taylor activation-step ops.

  jet_activation          backward: the fused jet_activation_backward kernel;
                          bias gradient = sum over samples of slot 0's gradient.
  jet_activation_backward backward (the double backward of the step): the
                          vector-Jacobian product of the torch-ops reference
                          (hoderiv_ext.jet_reference), recomputed on the
                          caller's own tensors, so it stays differentiable
                          (third and higher derivatives go through the
                          reference, up to the elementwise op's order 8).
  jet_activation_first    backward: the fused jet_activation_first_backward kernel (gradients
                          with respect to the preactivation and the weight).
  jet_activation_first_backward
                          backward (the double backward of the first step): the
                          vector-Jacobian product of the torch-ops reference
                          (jet_reference.first_activation_step_backward), recomputed
                          on the caller's tensors, so it stays differentiable.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hoderiv_ext import jet_reference
from hoderiv_ext._extension import extension_loaded

_NAMESPACE = "hoderiv_ext"


def _register() -> None:
    ops = torch.ops.hoderiv_ext

    @torch.library.register_fake(f"{_NAMESPACE}::jet_activation")
    def _(jet, bias, function, params, pair_i, pair_j, num_inputs, collapsed):  # type: ignore[no-untyped-def]
        torch._check(jet.dim() == 3, lambda: "jet must be (N, S, m)")
        return torch.empty_like(jet)

    @torch.library.register_fake(f"{_NAMESPACE}::jet_activation_backward")
    def _(grad, jet, bias, function, params, pair_i, pair_j, num_inputs, collapsed):  # type: ignore[no-untyped-def]
        torch._check(grad.shape == jet.shape, lambda: "grad must have the jet's shape")
        return torch.empty_like(jet)

    @torch.library.register_fake(f"{_NAMESPACE}::jet_activation_first")
    def _(preactivation, weight, function, params, pair_i, pair_j, collapsed):  # type: ignore[no-untyped-def]
        num_second = 1 if collapsed else pair_i.shape[0]
        n, m = preactivation.shape
        return preactivation.new_empty((n, 1 + weight.shape[1] + num_second, m))

    @torch.library.register_fake(f"{_NAMESPACE}::jet_activation_first_backward")
    def _(grad, preactivation, weight, function, params, pair_i, pair_j, collapsed):  # type: ignore[no-untyped-def]
        torch._check(grad.dim() == 3, lambda: "grad must be the output jet's gradient (N, S, m)")
        return preactivation.new_empty(preactivation.shape), weight.new_empty(weight.shape)

    def attached(tensor: Tensor | None) -> Tensor | None:
        """An input of a recomputed double backward.

        The vector-Jacobian product it takes must give the partial derivative
        with respect to each input of the op, while one input may be computed
        from another in the caller's graph (the incoming gradient depends on
        the jet when later layers are nonlinear; the preactivation on the
        weight). A fresh alias (``view_as``) of an input that requires grad
        stays attached to the caller's graph -- the result is differentiable
        again -- but no other input descends from it, so autograd.grad stops
        there and neither counts a path twice nor runs (and frees) the
        caller's nodes. Constants get a fresh leaf.
        """
        if tensor is None:
            return None
        if tensor.requires_grad:
            return tensor.view_as(tensor)
        return tensor.detach().requires_grad_(True)

    # ----- jet_activation -----
    def setup_step(ctx: Any, inputs: tuple, output: Tensor) -> None:
        jet, bias, function, params, pair_i, pair_j, num_inputs, collapsed = inputs
        ctx.save_for_backward(jet, bias, pair_i, pair_j)
        ctx.config = (function, list(params), num_inputs, collapsed)

    def backward_step(ctx: Any, grad: Tensor) -> tuple:
        jet, bias, pair_i, pair_j = ctx.saved_tensors
        function, params, num_inputs, collapsed = ctx.config
        grad_jet = ops.jet_activation_backward(grad, jet, bias, function, params, pair_i, pair_j, num_inputs, collapsed)
        grad_bias = grad_jet[:, 0].sum(0) if bias is not None and ctx.needs_input_grad[1] else None
        return grad_jet, grad_bias, None, None, None, None, None, None

    torch.library.register_autograd(f"{_NAMESPACE}::jet_activation", backward_step, setup_context=setup_step)

    # ----- jet_activation_backward (double backward of the step) -----
    def setup_step_backward(ctx: Any, inputs: tuple, output: Tensor) -> None:
        grad, jet, bias, function, params, pair_i, pair_j, num_inputs, collapsed = inputs
        ctx.save_for_backward(grad, jet, bias, pair_i, pair_j)
        ctx.config = (function, list(params), num_inputs, collapsed)

    def backward_step_backward(ctx: Any, grad_grad_jet: Tensor) -> tuple:
        grad, jet, bias, pair_i, pair_j = ctx.saved_tensors
        function, params, num_inputs, collapsed = ctx.config
        create_graph = torch.is_grad_enabled()  # True when the caller differentiates once more

        with torch.enable_grad():
            grad_, jet_, bias_ = attached(grad), attached(jet), attached(bias)
            out = jet_reference.activation_step(jet_, bias_, function, params, pair_i, pair_j, num_inputs, collapsed)
            (grad_jet,) = torch.autograd.grad(out, jet_, grad_, create_graph=True)
            wanted = [grad_, jet_] + ([bias_] if bias_ is not None else [])
            results = torch.autograd.grad(
                grad_jet, wanted, grad_grad_jet, allow_unused=True, materialize_grads=True, create_graph=create_graph
            )
        grad_of_grad, grad_of_jet = results[0], results[1]
        grad_of_bias = results[2] if bias_ is not None else None
        return grad_of_grad, grad_of_jet, grad_of_bias, None, None, None, None, None, None

    torch.library.register_autograd(
        f"{_NAMESPACE}::jet_activation_backward", backward_step_backward, setup_context=setup_step_backward
    )

    # ----- jet_activation_first -----
    def setup_first(ctx: Any, inputs: tuple, output: Tensor) -> None:
        preactivation, weight, function, params, pair_i, pair_j, collapsed = inputs
        ctx.save_for_backward(preactivation, weight, pair_i, pair_j)
        ctx.config = (function, list(params), collapsed)

    def backward_first(ctx: Any, grad: Tensor) -> tuple:
        preactivation, weight, pair_i, pair_j = ctx.saved_tensors
        function, params, collapsed = ctx.config
        grad_a, grad_weight = ops.jet_activation_first_backward(
            grad, preactivation, weight, function, params, pair_i, pair_j, collapsed
        )
        return grad_a, grad_weight, None, None, None, None, None

    torch.library.register_autograd(f"{_NAMESPACE}::jet_activation_first", backward_first, setup_context=setup_first)

    # ----- jet_activation_first_backward (double backward of the first step) -----
    def setup_first_backward(ctx: Any, inputs: tuple, output: tuple) -> None:
        grad, preactivation, weight, function, params, pair_i, pair_j, collapsed = inputs
        ctx.save_for_backward(grad, preactivation, weight, pair_i, pair_j)
        ctx.config = (function, list(params), collapsed)

    def backward_first_backward(ctx: Any, grad_grad_a: Tensor | None, grad_grad_weight: Tensor | None) -> tuple:
        grad, preactivation, weight, pair_i, pair_j = ctx.saved_tensors
        function, params, collapsed = ctx.config
        create_graph = torch.is_grad_enabled()  # True when the caller differentiates once more
        if grad_grad_a is None and grad_grad_weight is None:
            return torch.zeros_like(grad), torch.zeros_like(preactivation), torch.zeros_like(weight), *([None] * 5)
        with torch.enable_grad():
            grad_, preactivation_, weight_ = attached(grad), attached(preactivation), attached(weight)
            grad_a, grad_weight = jet_reference.first_activation_step_backward(
                grad_, preactivation_, weight_, function, params, pair_i, pair_j, collapsed
            )
            pairs = [(out, cot) for out, cot in ((grad_a, grad_grad_a), (grad_weight, grad_grad_weight)) if cot is not None]
            results = torch.autograd.grad(
                [out for out, _ in pairs], [grad_, preactivation_, weight_], [cot for _, cot in pairs],
                allow_unused=True, materialize_grads=True, create_graph=create_graph,
            )
        return results[0], results[1], results[2], None, None, None, None, None

    torch.library.register_autograd(
        f"{_NAMESPACE}::jet_activation_first_backward", backward_first_backward, setup_context=setup_first_backward
    )


def jet_ops_available() -> bool:
    return extension_loaded() and hasattr(torch.ops.hoderiv_ext, "jet_activation")


if jet_ops_available():
    _register()


__all__ = ["jet_ops_available"]
