"""Random scenes of the Shapes world, deterministic from (seed, split).

Each split draws from its own random stream, np.random.default_rng([seed, split_id,
stream]), so "train", "test" and "compositional" are independent for the same seed and
a scene list is the same on every machine. With hold_out=True (the default), the
colour-shape pairs of COMPOSITIONAL_PAIRS never occur in "train" or "test" scenes and
every "compositional" scene contains at least one of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice

import numpy as np

from .world import (
    COLOURS,
    COMPOSITIONAL_PAIRS,
    RADIUS_JITTER,
    SHAPES,
    SIZE_RADIUS,
    SIZES,
    Scene,
    ShapeObject,
)

SPLITS = ("train", "test", "compositional")
MAX_OBJECTS = 4
OBJECT_GAP = 0.03  # minimum gap between two bounding circles (~1 px at 32 px)
BORDER = 0.02  # minimum gap between a bounding circle and the image border

_CANDIDATES = 64  # positions tried at once for one object
_MAX_RESTARTS = 200  # then give up on a layout (never happens with the default sizes)
_STREAM_SCENES, _STREAM_SINGLE = 0, 1


def split_rng(seed: int, split: str, stream: int = 0) -> np.random.Generator:
    """The random stream of a (seed, split) pair; `stream` separates independent uses."""
    check_split(split)
    return np.random.default_rng([int(seed), SPLITS.index(split), int(stream)])


def check_split(split: str) -> None:
    """Raise ValueError unless split is one of SPLITS."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def allowed_pairs(split: str = "train", hold_out: bool = True) -> tuple[tuple[str, str], ...]:
    """The (colour, shape) pairs whose objects a split's scenes are made of.

    hold_out=True:  "train", "test" -> the 12 pairs not in COMPOSITIONAL_PAIRS;
                    "compositional" -> the 3 COMPOSITIONAL_PAIRS (the pairs every scene
                    of that split contains at least one of; its other objects are free).
    hold_out=False: "train", "test" -> all 15 pairs; "compositional" -> ValueError.
    Pairs come in class order (colour-major).
    """
    check_split(split)
    if split == "compositional":
        if not hold_out:
            raise ValueError('split="compositional" needs hold_out=True')
        return tuple(p for p in _all_pairs() if p in COMPOSITIONAL_PAIRS)
    if hold_out:
        return tuple(p for p in _all_pairs() if p not in COMPOSITIONAL_PAIRS)
    return _all_pairs()


def _all_pairs() -> tuple[tuple[str, str], ...]:
    return tuple((c, s) for c in COLOURS for s in SHAPES)


def _check_sizes(sizes: Sequence[str]) -> tuple[str, ...]:
    sizes = tuple(sizes)
    if not sizes or any(s not in SIZES for s in sizes):
        raise ValueError(f"sizes must be a non-empty subset of {SIZES}, got {sizes}")
    return sizes


def _check_num_objects(num_objects: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(num_objects, (int, np.integer)):
        lo = hi = int(num_objects)
    else:
        lo, hi = (int(v) for v in num_objects)
    if not 1 <= lo <= hi <= MAX_OBJECTS:
        raise ValueError(
            f"num_objects must be an int or a (min, max) pair within [1, {MAX_OBJECTS}], "
            f"got {num_objects}"
        )
    return lo, hi


def _check_n(n: int) -> int:
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n}")
    return int(n)


def _place(rng: np.random.Generator, radii: np.ndarray) -> np.ndarray:
    """Centres (K, 2) for bounding circles of radii (K,): inside the image, no overlap.

    Rejection sampling with a bounded number of tries: the largest objects are placed
    first, each at the first of a batch of uniform candidates that keeps OBJECT_GAP to
    every circle placed before it; if no candidate does, the layout starts again.
    """
    order = np.argsort(-radii, kind="stable")
    for _ in range(_MAX_RESTARTS):
        centres = np.zeros((len(radii), 2))
        for n, i in enumerate(order):
            r = radii[i]
            num = 1 if n == 0 else _CANDIDATES
            cand = rng.uniform(r + BORDER, 1.0 - r - BORDER, size=(num, 2))  # (M, 2)
            if n > 0:
                placed = order[:n]
                diff = cand[:, None, :] - centres[placed][None, :, :]  # (M, P, 2)
                min_dist = r + radii[placed] + OBJECT_GAP  # (P,)
                ok = np.all((diff**2).sum(-1) >= min_dist**2, axis=1)  # (M,)
                hits = np.flatnonzero(ok)
                if hits.size == 0:
                    break
                cand = cand[hits[:1]]
            centres[i] = cand[0]
        else:
            return centres
    raise RuntimeError(f"could not place {len(radii)} objects without overlap")


def _make_scene(rng: np.random.Generator, attributes: list[tuple[str, str, str]]) -> Scene:
    """A scene of objects with the given (colour, shape, size), at random places.

    Radius = SIZE_RADIUS[size] + uniform(-RADIUS_JITTER, RADIUS_JITTER).
    """
    base = np.array([SIZE_RADIUS[size] for _, _, size in attributes])
    radii = base + rng.uniform(-RADIUS_JITTER, RADIUS_JITTER, size=len(attributes))  # (K,)
    centres = _place(rng, radii)  # (K, 2)
    objects = tuple(
        ShapeObject(shape, colour, size, x, y, r)
        for (colour, shape, size), (x, y), r in zip(
            attributes, centres.tolist(), radii.tolist(), strict=True
        )
    )
    return Scene(objects)


def iter_scenes(
    seed: int = 0,
    split: str = "train",
    num_objects: int | tuple[int, int] = (1, MAX_OBJECTS),
    sizes: Sequence[str] = SIZES,
    hold_out: bool = True,
) -> Iterator[Scene]:
    """An endless stream of random scenes; generate_scenes(n, ...) is its first n.

    Per scene: the number of objects K is uniform in num_objects (inclusive); each
    object's colour is uniform over COLOURS, then its shape uniform over the shapes
    allowed with that colour (this keeps both colours and shapes uniform although some
    pairs are held out); its size uniform over `sizes`. In the compositional split one
    object, at a random place in the tuple, is a held-out pair and the others are free.
    """
    pairs = allowed_pairs(split, hold_out)
    lo, hi = _check_num_objects(num_objects)
    sizes = _check_sizes(sizes)
    return _scene_stream(split_rng(seed, split, _STREAM_SCENES), split, pairs, lo, hi, sizes)


def _scene_stream(
    rng: np.random.Generator,
    split: str,
    pairs: tuple[tuple[str, str], ...],
    lo: int,
    hi: int,
    sizes: tuple[str, ...],
) -> Iterator[Scene]:
    compositional = split == "compositional"
    free = _all_pairs() if compositional else pairs
    shapes_of = {c: [s for s in SHAPES if (c, s) in free] for c in COLOURS}
    while True:
        k = int(rng.integers(lo, hi + 1))
        attributes = []
        for j in range(k):
            if compositional and j == 0:
                colour, shape = pairs[rng.integers(len(pairs))]
            else:
                colour = COLOURS[rng.integers(len(COLOURS))]
                shape = shapes_of[colour][rng.integers(len(shapes_of[colour]))]
            attributes.append((colour, shape, sizes[rng.integers(len(sizes))]))
        if compositional:
            attributes = [attributes[i] for i in rng.permutation(k)]
        yield _make_scene(rng, attributes)


def generate_scenes(
    n: int,
    seed: int = 0,
    split: str = "train",
    num_objects: int | tuple[int, int] = (1, MAX_OBJECTS),
    sizes: Sequence[str] = SIZES,
    hold_out: bool = True,
) -> list[Scene]:
    """n random scenes of a split; see iter_scenes for how they are drawn.

    Args:
        n: number of scenes.
        seed: the same (seed, split, arguments) always give the same scenes.
        split: "train", "test" or "compositional".
        num_objects: K objects per scene, an int or an inclusive (min, max) in [1, 4].
        sizes: the sizes objects may have, a subset of SIZES.
        hold_out: keep COMPOSITIONAL_PAIRS out of "train"/"test" and in every
            "compositional" scene; False lets "train"/"test" use all 15 pairs
            (and is a ValueError with "compositional").
    Returns:
        list of n Scene, each of K non-overlapping objects inside the unit square.
    """
    n = _check_n(n)
    return list(islice(iter_scenes(seed, split, num_objects, sizes, hold_out), n))


def generate_single_object_scenes(
    n: int,
    seed: int = 0,
    split: str = "train",
    sizes: Sequence[str] = SIZES,
    hold_out: bool = True,
) -> list[Scene]:
    """n one-object scenes, exactly balanced over the split's allowed classes.

    The classes (allowed_pairs(split, hold_out): 12, 15, or the 3 held-out pairs for
    "compositional") are dealt in rounds, each round a fresh shuffle of all of them, so
    any prefix holds every class the same number of times, give or take one. Size is
    uniform over `sizes`; the position uniform inside the image.
    """
    n = _check_n(n)
    pairs = allowed_pairs(split, hold_out)
    sizes = _check_sizes(sizes)
    rng = split_rng(seed, split, _STREAM_SINGLE)
    scenes = []
    while len(scenes) < n:
        for p in rng.permutation(len(pairs))[: n - len(scenes)]:
            colour, shape = pairs[p]
            size = sizes[rng.integers(len(sizes))]
            scenes.append(_make_scene(rng, [(colour, shape, size)]))
    return scenes
