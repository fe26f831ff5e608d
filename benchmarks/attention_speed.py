"""How fast is notebook 02's from-scratch attention? A script run by hand, never by the tests.

    python benchmarks/attention_speed.py [--threads N] [--repeats R]

Times the solution's ``scaled_dot_product_attention`` (matmul, masked_fill, softmax, matmul)
against ``F.scaled_dot_product_attention`` (torch's fused kernel) on the CPU, for the shape the
notebook's ViT uses: B = 64 images, h = 4 heads, N = 65 tokens (8 × 8 patches + [CLS]),
d = 32, float32; forward alone and forward + backward. Target (issue 4): within 3× of torch.

The two are timed in alternation and the median of many rounds is kept, so that other load on
the machine slows both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

TARGET = 3.0  # at most this many times slower than torch
SHAPE = {"B": 64, "heads": 4, "N": 65, "d": 32}


def load_attention():
    """The solution's scaled_dot_product_attention, taken from the notebook's source."""
    import contextlib
    import io

    from tests.notebook_code import load_solution

    with contextlib.redirect_stdout(io.StringIO()):  # the set-up cell prints a banner
        return load_solution("02_vision_transformer")["scaled_dot_product_attention"]


def time_once(fn, backward: bool, q, k, v) -> float:
    if backward:
        q, k, v = (t.detach().requires_grad_(True) for t in (q, k, v))
    start = time.perf_counter()
    out = fn(q, k, v)
    if backward:
        out.backward(torch.ones_like(out))
    return time.perf_counter() - start


def compare(ours, backward: bool, repeats: int, q, k, v) -> tuple[float, float]:
    """Median seconds per call of (ours, torch), timed in alternation."""
    grad = torch.enable_grad() if backward else torch.no_grad()
    with grad:
        for _ in range(5):  # warm-up: allocator, kernels, caches
            time_once(ours, backward, q, k, v)
            time_once(F.scaled_dot_product_attention, backward, q, k, v)
        mine, theirs = [], []
        for _ in range(repeats):
            mine.append(time_once(ours, backward, q, k, v))
            theirs.append(time_once(F.scaled_dot_product_attention, backward, q, k, v))
    return statistics.median(mine), statistics.median(theirs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    attention = load_attention()

    def ours(q, k, v):
        return attention(q, k, v)[0]

    generator = torch.Generator().manual_seed(0)
    b, h, n, d = SHAPE.values()
    q, k, v = (torch.randn(b, h, n, d, generator=generator) for _ in range(3))
    torch.testing.assert_close(ours(q, k, v), F.scaled_dot_product_attention(q, k, v))

    print(f"attention, q k v ({b}, {h}, {n}, {d}) float32, CPU, {torch.get_num_threads()} "
          f"thread(s), torch {torch.__version__}; median of {args.repeats} rounds")
    print(f"{'':<20}{'from scratch':>14}{'torch':>11}{'ratio':>8}")
    worst = 0.0
    for name, backward in [("forward", False), ("forward + backward", True)]:
        mine, theirs = compare(ours, backward, args.repeats, q, k, v)
        ratio = mine / theirs
        worst = max(worst, ratio)
        print(f"{name:<20}{mine * 1e3:>11.2f} ms{theirs * 1e3:>8.2f} ms{ratio:>7.2f}×")
    verdict = "within" if worst <= TARGET else "SLOWER than"
    print(f"largest ratio {worst:.2f}×: {verdict} the target of {TARGET:g}×")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
