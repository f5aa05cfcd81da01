"""Running the autograd engine inside ``torch.inference_mode()``.

Autograd records nothing in inference mode, not even under
``torch.enable_grad()``: the engine's backward passes would find no graph
(and nested autograd would silently return zeros). The engine therefore
leaves inference mode for the call and differentiates a normal copy of x;
the results carry no graph, as inference mode promises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from hoderiv_ext.core.validation import inference_mode_enabled
from torch import Tensor

Result = TypeVar("Result")

_INFERENCE_TENSOR_MESSAGE = "Inference tensors cannot be saved for backward"


def outside_inference_mode(compute: Callable[[Tensor], Result], x: Tensor) -> Result:
    """``compute(x)``, or, in inference mode, ``compute`` of a normal copy of x with inference mode off."""
    try:
        if not inference_mode_enabled():
            return compute(x)
        with torch.inference_mode(False):
            return compute(x.clone())
    except RuntimeError as error:
        if _INFERENCE_TENSOR_MESSAGE not in str(error):
            raise
        raise RuntimeError(
            "hoderiv_ext: the autograd engine cannot differentiate f here: some of its parameters or "
            "buffers were created inside torch.inference_mode() (inference tensors cannot take part in "
            "autograd). Create them outside inference mode, or use backend='kernel' for a network the "
            "Taylor engine serves."
        ) from error
