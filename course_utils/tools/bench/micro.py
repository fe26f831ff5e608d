"""Micro-benchmarks: the solutions' from-scratch functions against torch's, side by side.

- notebook 01's vectorised (im2col) ``conv2d`` vs ``F.conv2d``, forward, on the first layer
  of the notebook's SmallCNN (budget: at most 5× slower on the CPU);
- notebook 02's ``scaled_dot_product_attention`` vs ``F.scaled_dot_product_attention`` (torch's
  fused kernel), forward and forward + backward, on the notebook's ViT (budget: within 3×).

The two sides of a comparison are called alternately, after a warm-up, and the medians are
compared: other load on the machine then slows both alike. Each side is first checked to
compute the same thing as the other.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from course_utils.tools.bench.results import MicroResult
from course_utils.tools.solutions import load_solution

#: Where the from-scratch functions come from: budget key -> (assignment, function name).
SOURCES = {
    "conv2d": ("01_convolution_pooling", "conv2d"),
    "attention": ("02_vision_transformer", "scaled_dot_product_attention"),
}

#: The two sides must agree this closely (a sanity check, not a test: GPUs compute F.conv2d
#: in TF32, which differs from float32 in the third digit).
TOLERANCE = 1e-2


@dataclass(frozen=True)
class MicroSizes:
    """The inputs' sizes and how often each side is timed; the defaults are the notebooks' jobs.

    Attributes:
        conv: (B, C, H, W, C_out): 64 RGB images of 32×32, 16 filters of 3×3, padding 1
            (notebook 01's SmallCNN's first layer).
        attention: (B, h, N, d): 64 images, 4 heads, 65 tokens (8×8 patches + [CLS]), d = 32
            (notebook 02's ViT).
        repeats: timed calls of each side, alternating.
        warmup: untimed calls of each side first (allocator, thread pool, caches).
    """

    conv: tuple[int, int, int, int, int] = (64, 3, 32, 32, 16)
    attention: tuple[int, int, int, int] = (64, 4, 65, 32)
    repeats: int = 50
    warmup: int = 5


def run_micro(root: Path, device: str, sizes: MicroSizes | None = None) -> list[MicroResult]:
    """Every micro-benchmark on ``device``, with the solutions of the course at ``root``, at
    ``sizes`` (default: the notebooks' jobs).

    A comparison that cannot run (a solution that fails or disagrees with torch) is returned
    with its ``error`` set rather than raised.
    """
    sizes = sizes or MicroSizes()
    results = []
    for key, jobs in (("conv2d", conv2d_jobs), ("attention", attention_jobs)):
        try:
            ours = solution_function(root, key)
            for name, shape, pair in jobs(ours, sizes, torch.device(device)):
                results.append(compare(key, name, shape, pair, sizes, device))
        except Exception as error:
            results.append(MicroResult(key, f"{key}: from scratch vs torch",
                                       error=f"{type(error).__name__}: {error}"))
    return results


def solution_function(root: Path, key: str) -> Callable:
    """The from-scratch function ``key`` of SOURCES, from its solution notebook's cells."""
    assignment, function = SOURCES[key]
    with contextlib.redirect_stdout(io.StringIO()):  # the set-up cell prints versions
        return load_solution(root, assignment)[function]


Pair = tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]


def conv2d_jobs(conv2d: Callable, sizes: MicroSizes,
                device: torch.device) -> list[tuple[str, str, Pair]]:
    """(name, shape, (ours, torch's)) for ``conv2d``: forward, no gradients."""
    b, c, h, w, c_out = sizes.conv
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, h, w, generator=generator).to(device)  # (B, C, H, W)
    weight = torch.randn(c_out, c, 3, 3, generator=generator).to(device)  # (C_out, C, 3, 3)
    bias = torch.randn(c_out, generator=generator).to(device)  # (C_out,)

    @torch.no_grad()
    def ours():
        return conv2d(x, weight, bias, padding=1)

    @torch.no_grad()
    def theirs():
        return F.conv2d(x, weight, bias, padding=1)

    shape = f"x {tuple(x.shape)}, weight {tuple(weight.shape)}, padding 1"
    return [("conv2d vs F.conv2d, forward", shape, (ours, theirs))]


def attention_jobs(attention: Callable, sizes: MicroSizes,
                   device: torch.device) -> list[tuple[str, str, Pair]]:
    """(name, shape, (ours, torch's)) for attention: forward, and forward + backward."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*sizes.attention, generator=generator).to(device)  # (B, h, N, d)
               for _ in range(3))

    def forward(fn):
        @torch.no_grad()
        def call():
            return fn(q, k, v)
        return call

    def forward_backward(fn):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]  # one set per side

        def call():
            for leaf in leaves:
                leaf.grad = None
            out = fn(*leaves)  # (B, h, N, d)
            out.backward(torch.ones_like(out))
            return torch.cat([leaf.grad for leaf in leaves], dim=-1)  # (B, h, N, 3d)
        return call

    def ours(*qkv):
        return attention(*qkv)[0]  # (output, weights)

    shape = "q, k, v " + str(tuple(q.shape))
    return [(f"attention vs F.scaled_dot_product_attention, {name}", shape,
             (wrap(ours), wrap(F.scaled_dot_product_attention)))
            for name, wrap in (("forward", forward), ("forward + backward", forward_backward))]


def compare(key: str, name: str, shape: str, pair: Pair, sizes: MicroSizes,
            device: str) -> MicroResult:
    """Check that the pair agrees (TOLERANCE), then time it side by side (``side_by_side``)."""
    ours, theirs = pair
    torch.testing.assert_close(ours(), theirs(), atol=TOLERANCE, rtol=TOLERANCE)
    ours_s, theirs_s = side_by_side(ours, theirs, sizes.repeats, sizes.warmup,
                                    synchronize(device))
    return MicroResult(key, name, shape, ours_ms=1e3 * ours_s, torch_ms=1e3 * theirs_s,
                       ratio=ours_s / theirs_s)


def side_by_side(ours: Callable[[], object], theirs: Callable[[], object], repeats: int,
                 warmup: int, sync: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """Median seconds per call of ``ours()`` and of ``theirs()``, called alternately
    ``repeats`` times after ``warmup`` untimed calls each; ``sync`` waits for the device."""
    for _ in range(warmup):
        ours()
        theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, spent in zip((ours, theirs), times, strict=True):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            spent.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def synchronize(device: str) -> Callable[[], None]:
    """A function that waits for ``device`` to finish its queued work (CPU: nothing to wait)."""
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None
