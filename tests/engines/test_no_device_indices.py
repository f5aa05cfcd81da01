"""No per-call index tensor built from host lists ON A DEVICE: on CUDA each is a synchronous host-to-device
copy that stalls the host and cannot be captured in a CUDA graph.

Checked on every device by recording each ``torch.tensor`` / ``torch.as_tensor`` call that names a
``device`` while the calls below run (the pattern that copies on CUDA); the fixes build indices on the
device (``torch.arange``), take entries as views, or fill constants with ``torch.full``.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import Tensor, nn

from hoderiv_ext import Bilaplacian, Laplacian, derivatives

from conftest import make_mlp


def _net() -> nn.Module:
    return make_mlp(3, [8, 8], 1, nn.Tanh, torch.float64, "cpu")


def _traced(net: nn.Module) -> Callable[[Tensor], Tensor]:
    return lambda x: torch.where(x[:, :1] > 0, net(x) * x[:, 1:2].sin(), 0.5) + x.pow(2).sum(-1, keepdim=True)


CALLS = [
    pytest.param(lambda net: (_traced(net), "full"), id="traced-full"),
    pytest.param(lambda net: (_traced(net), Laplacian(dims=[2, 0])), id="traced-partial-laplacian"),
    pytest.param(lambda net: (_traced(net), Bilaplacian(dims=[2, 0])), id="traced-bilaplacian"),
    pytest.param(lambda net: (_traced(net), [2, 0]), id="traced-rows"),
    pytest.param(lambda net: (net, "full"), id="plan-full"),
    pytest.param(lambda net: (net, Laplacian(dims=[2, 0])), id="plan-partial-laplacian"),
    pytest.param(lambda net: (net, Bilaplacian(dims=[2, 0])), id="plan-bilaplacian"),
]


@pytest.mark.parametrize("make_call", CALLS)
def test_no_index_tensor_is_built_on_a_device_per_call(make_call, monkeypatch: pytest.MonkeyPatch) -> None:
    f, hessian = make_call(_net())
    x = torch.randn(5, 3, dtype=torch.float64)
    derivatives(f, x, hessian=hessian, backend="kernel")  # trace outside the recording
    recorded: list[str] = []
    for name in ("tensor", "as_tensor"):
        original = getattr(torch, name)

        def recording(*args: object, _original=original, _name=name, **kwargs: object) -> Tensor:
            if kwargs.get("device") is not None:
                recorded.append(f"torch.{_name}({args[0]!r}, device={kwargs['device']})")
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch, name, recording)
    result = derivatives(f, x, hessian=hessian, backend="kernel")
    assert result.engine == "taylor"
    assert recorded == []
