"""The stub denoiser that diffusion_loss's and sample's checks hand to the student's code:
a fixed, cheap stand-in for a trained model, built by the checks from plain tensors."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from course_utils.checks.case import Case


class StubDenoiser(nn.Module):
    """A fixed, cheap stand-in for a trained denoiser: ``model(x_t, t, cond) -> noise``.

    Row-wise (calling it on a batch or on its halves gives the same rows), and it depends on
    ``x_t``, ``t`` and the caption, so a wrong argument changes the result. A caption of all
    zeros (the null caption) gives the unconditional estimate. It records what it received.
    """

    def __init__(self, image_shape: Sequence[int], pattern: torch.Tensor,
                 words: torch.Tensor, num_steps: int):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.pattern, self.words, self.num_steps = pattern, words, num_steps
        self.scale = nn.Parameter(torch.ones((), dtype=pattern.dtype, device=pattern.device))
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W), t (B,) integer timesteps, cond (B, L) token ids -> (B, C, H, W)."""
        if not torch.is_tensor(t) or t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"the model expects t as a (B,) tensor of timesteps, one per "
                             f"image; got {t!r:.60}")
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"the model expects integer timesteps (an embedding table and "
                             f"the schedule are indexed by them), got {t.dtype}: build them "
                             f"with torch.full((B,), t, dtype=torch.long)")
        if tuple(x.shape[1:]) != self.image_shape or cond.shape[0] != x.shape[0]:
            raise ValueError(f"the model expects x of shape (B, {self.image_shape}) and cond "
                             f"of shape (B, L); got {tuple(x.shape)} and {tuple(cond.shape)}")
        text = torch.tanh(cond.to(self.words.dtype) @ self.words)  # (B,): 0 for a null caption
        time = (t.to(x.dtype) / self.num_steps)[:, None, None, None]  # (B, 1, 1, 1)
        out = 0.3 * x + 0.4 * text[:, None, None, None] * self.pattern + 0.1 * time
        out = self.scale * out
        self.calls.append((x.detach(), t.detach(), cond.detach(), out.detach()))
        return out


def stub_for(case: Case, num_steps: int) -> StubDenoiser:
    """The stub of ``case``: its ``pattern`` and ``words`` inputs, ``num_steps`` timesteps."""
    inputs = case.inputs
    return StubDenoiser(inputs["pattern"].shape, inputs["pattern"], inputs["words"], num_steps)
