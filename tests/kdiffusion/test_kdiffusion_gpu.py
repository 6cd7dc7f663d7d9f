"""On a CUDA device: after the plan (validated and prepared before the first model call),
sample_tcd makes no host-device synchronisation, and its result matches the CPU run."""

from __future__ import annotations

import diffusers
import pytest
import torch
from kdiffusion_helpers import DiscreteDenoiser, assert_close, toy_net

from tcd_kdiffusion import get_sigmas_tcd, sample_tcd

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


class StrictAfterFirstCall(torch.nn.Module):
    """Switches torch's sync debug mode to "error" when the sampler first calls the model:
    from then on any host synchronisation raises."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner_model = inner

    def forward(self, x, sigma, **kwargs):
        if torch.cuda.get_sync_debug_mode() == 0:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        return self.inner_model(x, sigma, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("eta", [0.3, torch.tensor([0.0, 0.5], dtype=torch.float64)])
def test_no_sync_per_step_and_same_result_as_cpu(dtype, eta) -> None:
    ac = diffusers.TCDScheduler().alphas_cumprod
    results = []
    z = torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    noises = [torch.randn(z.shape, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    for device in ("cuda", "cpu"):
        table = ac.to(device)
        model = DiscreteDenoiser(toy_net(table), table, "epsilon")
        model = lambda x, s, m=model: m(x.float(), s).to(x.dtype)
        strict = StrictAfterFirstCall(model) if device == "cuda" else model
        sigmas = get_sigmas_tcd(4, ac, device=device)
        draws = iter([n.to(device, dtype) for n in noises])
        x = (z / ac[999].sqrt()).to(device, dtype)
        try:
            out = sample_tcd(
                strict, x, sigmas, None, None, True, lambda s, n, d=draws: next(d), eta, ac
            )
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert out.device.type == device and out.dtype == dtype
        results.append(out.float().cpu())
    if dtype == torch.float32:
        assert_close(results[0], results[1], "CUDA vs CPU")
    else:
        scale = 1 + float(results[1].abs().max())
        assert float((results[0] - results[1]).abs().max()) <= 8 * 2.0**-10 * scale


def test_sync_debug_mode_is_enforced() -> None:
    """Guards the test above: a synchronising model call does raise in "error" mode."""
    x = torch.ones(1, device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError):
            x.item()
    finally:
        torch.cuda.set_sync_debug_mode("default")
