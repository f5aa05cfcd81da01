"""Fake kernels and autograd formulas for the Taylor activation-step ops.

  jet_activation          backward: the fused jet_activation_backward kernel;
                          bias gradient = sum over samples of slot 0's gradient.
  jet_activation_backward backward (the double backward of the step): the
                          vector-Jacobian product of the torch-ops reference
                          (hoderiv_ext.jet_reference), recomputed on aliases
                          of the caller's tensors (recomputed_vjp), so it
                          stays differentiable
                          (third and higher derivatives go through the
                          reference, up to the elementwise op's order 8).
  jet_activation_first    backward: the fused jet_activation_first_backward kernel (gradients
                          with respect to the preactivation and the weight).
  jet_activation_first_backward
                          backward (the double backward of the first step): the
                          vector-Jacobian product of the torch-ops reference
                          (jet_reference.first_activation_step_backward), the same
                          way.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def recomputed_vjp(reference: Callable[..., tuple], inputs: tuple, cotangents: tuple) -> list:
        """Partial derivatives of sum_k <cotangents[k], reference(*inputs)[k]> with respect to each input.

        The double backward of every jet op: ``reference`` is the op's
        torch-ops version (hoderiv_ext.jet_reference), recomputed here. Each
        input that requires grad enters as a fresh alias (``view_as``): still
        attached to the caller's graph, so the result is differentiable again
        when the caller differentiates once more, but no other input descends
        from it. One input may be computed from another in the caller's graph
        (the incoming gradient depends on the jet when later layers are
        nonlinear; the preactivation on the weight): taken on the tensors
        themselves, autograd.grad would give total derivatives, run (and free)
        the caller's nodes and count those paths twice. Constants enter as fresh
        leaves; None inputs stay None and get None. Cotangents that are None
        contribute nothing.
        """
        create_graph = torch.is_grad_enabled()  # True when the caller differentiates once more

        def alias(tensor: Tensor | None) -> Tensor | None:
            if tensor is None:
                return None
            return tensor.view_as(tensor) if tensor.requires_grad else tensor.detach().requires_grad_(True)

        with torch.enable_grad():
            aliases = [alias(t) for t in inputs]
            present = [a for a in aliases if a is not None]
            pairs = [(out, cot) for out, cot in zip(reference(*aliases), cotangents) if cot is not None]
            if pairs:
                grads = iter(torch.autograd.grad(
                    [out for out, _ in pairs], present, [cot for _, cot in pairs],
                    allow_unused=True, materialize_grads=True, create_graph=create_graph,
                ))
            else:
                grads = iter(torch.zeros_like(a) for a in present)
        return [None if a is None else next(grads) for a in aliases]

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

        def step_backward(grad_: Tensor, jet_: Tensor, bias_: Tensor | None) -> tuple:
            out = jet_reference.activation_step(jet_, bias_, function, params, pair_i, pair_j, num_inputs, collapsed)
            return torch.autograd.grad(out, jet_, grad_, create_graph=True)

        grad_of_grad, grad_of_jet, grad_of_bias = recomputed_vjp(step_backward, (grad, jet, bias), (grad_grad_jet,))
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

        def first_backward(grad_: Tensor, preactivation_: Tensor, weight_: Tensor) -> tuple:
            return jet_reference.first_activation_step_backward(
                grad_, preactivation_, weight_, function, params, pair_i, pair_j, collapsed
            )

        grads = recomputed_vjp(first_backward, (grad, preactivation, weight), (grad_grad_a, grad_grad_weight))
        return *grads, None, None, None, None, None

    torch.library.register_autograd(
        f"{_NAMESPACE}::jet_activation_first_backward", backward_first_backward, setup_context=setup_first_backward
    )


def jet_ops_available() -> bool:
    return extension_loaded() and hasattr(torch.ops.hoderiv_ext, "jet_activation")


if jet_ops_available():
    _register()


__all__ = ["jet_ops_available"]
