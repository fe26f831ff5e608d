"""How much slower is the solution's im2col ``conv2d`` than PyTorch's ``F.conv2d``?

COURSE_SPEC §7 asks for at most 5× on the CPU for 32×32 images. The job: a batch of 64 RGB
images of 32×32 pixels, 16 output channels, 3×3 kernels, padding 1 (the first layer of the
notebook's SmallCNN), forward pass, no gradients. Run by hand, on an otherwise idle machine:

    python benchmarks/conv2d_speed.py              # torch's default number of threads
    python benchmarks/conv2d_speed.py --threads 1  # one thread

It loads ``conv2d`` from the solution notebook (``tests.notebook_code.load_solution``), checks
it against ``F.conv2d``, times both over repeated runs after a warm-up and prints the ratio of
the fastest runs (the least disturbed by other processes, as ``timeit`` recommends), and the
ratio of the medians. Notebook 01 states the figure this printed on the reference machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.notebook_code import load_solution  # noqa: E402


def run_times(fn: Callable[[], object], seconds: float) -> list[float]:
    """The times of repeated calls of ``fn``, over about ``seconds`` (at least 10 calls)."""
    for _ in range(3):  # warm-up: allocator, thread pool, caches
        fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 10:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (default: torch's default, %(default)s)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()

    with contextlib.redirect_stdout(io.StringIO()):  # the set-up cell prints its versions
        conv2d = load_solution("01_convolution_pooling")["conv2d"]

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=generator)
    weight = torch.randn(args.channels, 3, 3, 3, generator=generator)
    bias = torch.randn(args.channels, generator=generator)
    with torch.no_grad():
        error = (conv2d(x, weight, bias, padding=1)
                 - F.conv2d(x, weight, bias, padding=1)).abs().max().item()
    if error > 1e-4:
        raise SystemExit(f"the solution's conv2d differs from F.conv2d by {error:.3g}")

    torch.set_num_threads(args.threads)
    timings = {}
    with torch.no_grad():
        for name, fn in (("conv2d (im2col)", conv2d), ("F.conv2d", F.conv2d)):
            timings[name] = run_times(lambda fn=fn: fn(x, weight, bias, padding=1),
                                      args.seconds)

    print(f"batch {args.batch}×3×{args.size}×{args.size}, {args.channels} filters 3×3, "
          f"padding 1, CPU, {args.threads} thread(s), torch {torch.__version__}")
    for name, times in timings.items():
        print(f"  {name:>16}: fastest {1000 * min(times):7.3f} ms, "
              f"median {1000 * statistics.median(times):7.3f} ms ({len(times)} runs)")
    ours, theirs = timings["conv2d (im2col)"], timings["F.conv2d"]
    ratio = min(ours) / min(theirs)
    print(f"  ratio: conv2d is {ratio:.2f}× slower than F.conv2d "
          f"({'within' if ratio <= 5 else 'OVER'} the 5× budget); ratio of the medians "
          f"{statistics.median(ours) / statistics.median(theirs):.2f}×")


if __name__ == "__main__":
    main()
