"""Render Shapes-world scenes to RGB images, anti-aliased, with numpy only.

Each object is drawn from its signed distance d (in pixels; negative inside) evaluated
at every pixel centre, and its coverage of a pixel is approximated analytically by

    coverage = clip(0.5 - d, 0, 1)

(a pixel whose centre lies on the edge is half covered). The image is

    image = background * (1 - sum_k coverage_k) + sum_k coverage_k * colour_k + noise

with a dark background, a small per-object colour jitter and faint uniform noise. The
jitter and the noise come from a random generator seeded by the scene itself (a CRC32
of its objects), so rendering is a pure function of (scene, image_size, settings): the
same scene always gives the same image, alone or in a batch.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from .world import BACKGROUND_RGB, COLOUR_RGB, COLOURS, SHAPES, SIZES, Scene

MIN_IMAGE_SIZE = 16
NOISE_STD = 0.02  # std of the pixel noise, in [0, 1] intensity units (~5 / 255)
COLOUR_JITTER = 0.04  # each object's RGB is shifted by up to this much per channel

_CHUNK = 512  # scenes rendered at once: bounds the (n, K, H, W) coverage buffer
_SQRT3 = np.sqrt(3.0)


def _scene_seed(scene: Scene) -> int:
    """A deterministic 32-bit seed from a scene's contents (platform independent)."""
    values = [
        (SHAPES.index(o.shape), COLOURS.index(o.colour), SIZES.index(o.size), o.x, o.y, o.radius)
        for o in scene.objects
    ]
    return zlib.crc32(np.asarray(values, dtype="<f8").tobytes())


def _circle_sdf(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance to a circle of radius r centred at the origin."""
    return np.sqrt(dx * dx + dy * dy) - r


def _square_sdf(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance to an axis-aligned square inscribed in the circle of radius r."""
    half = r / np.sqrt(2.0)  # half-side
    qx, qy = np.abs(dx) - half, np.abs(dy) - half
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    inside = np.minimum(np.maximum(qx, qy), 0.0)
    return outside + inside


def _triangle_sdf(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance to an upward-pointing equilateral triangle inscribed in radius r.

    Exact distance (Inigo Quilez, "2D distance functions", sdEquilateralTriangle), with
    the centroid at the origin: apex at (0, -r), base corners at (+-r sqrt(3)/2, r/2) in
    image coordinates (y down).
    """
    half_side = r * _SQRT3 / 2
    px = np.abs(dx) - half_side
    py = -dy + half_side / _SQRT3  # flip to y-up; the base moves onto py = 0
    # fold points beyond the slanted edge's normal onto the base's frame
    fold = px + _SQRT3 * py > 0
    px, py = np.where(fold, (px - _SQRT3 * py) / 2, px), np.where(fold, (-_SQRT3 * px - py) / 2, py)
    px = px - np.clip(px, -2 * half_side, 0.0)
    return -np.sqrt(px * px + py * py) * np.sign(py)


_SDF = {"circle": _circle_sdf, "square": _square_sdf, "triangle": _triangle_sdf}


def coverage(shape: str, x: float, y: float, radius: float, image_size: int) -> np.ndarray:
    """Anti-aliased coverage (H, W) in [0, 1] of one shape (normalised x, y, radius)."""
    return _coverage(shape, np.array([x]), np.array([y]), np.array([radius]), image_size)[0]


def _coverage(
    shape: str, x: np.ndarray, y: np.ndarray, radius: np.ndarray, image_size: int
) -> np.ndarray:
    """Coverage (M, H, W) of M shapes of one kind; x, y, radius (M,) normalised."""
    centres = np.arange(image_size) + 0.5  # pixel centres, in pixels
    dx = centres[None, None, :] - (x * image_size)[:, None, None]  # (M, 1, W)
    dy = centres[None, :, None] - (y * image_size)[:, None, None]  # (M, H, 1)
    r = (radius * image_size)[:, None, None]  # (M, 1, 1)
    d = _SDF[shape](dx, dy, r)  # (M, H, W), pixels
    return np.clip(0.5 - d, 0.0, 1.0)


def _check_render_args(image_size: int, noise: float, colour_jitter: float) -> None:
    if int(image_size) != image_size or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size}")
    if noise < 0 or colour_jitter < 0:
        raise ValueError(f"noise and colour_jitter must be >= 0, got {noise}, {colour_jitter}")


def render_scenes(
    scenes: Sequence[Scene],
    image_size: int = 32,
    noise: float = NOISE_STD,
    colour_jitter: float = COLOUR_JITTER,
) -> np.ndarray:
    """Render scenes to RGB images.

    Args:
        scenes: N scenes.
        image_size: H = W in pixels, at least MIN_IMAGE_SIZE (16).
        noise: std of the (uniform) pixel noise in [0, 1] units (0: none).
        colour_jitter: max per-channel shift of each object's colour (0: exact colours).
    Returns:
        uint8 array (N, H, W, 3). Deterministic: the same scene gives the same image.
    """
    _check_render_args(image_size, noise, colour_jitter)
    size = int(image_size)
    images = np.empty((len(scenes), size, size, 3), dtype=np.uint8)
    for start in range(0, len(scenes), _CHUNK):
        chunk = scenes[start : start + _CHUNK]
        images[start : start + len(chunk)] = _render_chunk(chunk, size, noise, colour_jitter)
    return images


def _render_chunk(
    scenes: Sequence[Scene], size: int, noise: float, colour_jitter: float
) -> np.ndarray:
    n = len(scenes)
    k_max = max([len(s) for s in scenes] + [1])
    cover = np.zeros((n, k_max, size, size), dtype=np.float32)  # (n, K, H, W)
    colours = np.zeros((n, k_max, 3), dtype=np.float32)  # (n, K, 3)
    noise_img = np.zeros((n, size, size, 3), dtype=np.float32)  # (n, H, W, 3)

    # 1. per scene: colour jitter and pixel noise, from the scene's own seed; the noise
    #    is uniform in [-a, a] with a = sqrt(3) * noise, so that its std is `noise`
    base = np.asarray([COLOUR_RGB[c] for c in COLOURS], dtype=np.float32)  # (5, 3)
    amplitude = np.float32(np.sqrt(3.0) * noise)
    for i, scene in enumerate(scenes):
        rng = np.random.default_rng(_scene_seed(scene))
        jitter = rng.uniform(-colour_jitter, colour_jitter, size=(len(scene), 3))  # (K, 3)
        colour_ids = [COLOURS.index(o.colour) for o in scene.objects]
        colours[i, : len(scene)] = base[colour_ids] + jitter
        if noise > 0:
            rng.random(dtype=np.float32, out=noise_img[i])  # (H, W, 3) in [0, 1)
    np.clip(colours, 0.0, 1.0, out=colours)
    noise_img = amplitude * (2.0 * noise_img - 1.0) if noise > 0 else noise_img

    # 2. coverage of all objects of one shape at once, scattered to (scene, slot)
    rows = [(i, k, o) for i, s in enumerate(scenes) for k, o in enumerate(s.objects)]
    for shape in SHAPES:
        sel = [(i, k, o) for i, k, o in rows if o.shape == shape]
        if not sel:
            continue
        idx, slot, objs = zip(*sel, strict=True)
        xs = np.array([o.x for o in objs])
        ys = np.array([o.y for o in objs])
        rs = np.array([o.radius for o in objs])
        cover[list(idx), list(slot)] = _coverage(shape, xs, ys, rs, size)

    # 3. composite: background where nothing covers, object colours where they do
    total = cover.sum(axis=1)  # (n, H, W); objects never overlap, only AA fringes may
    # (n, H, W, K) @ (n, 1, K, 3) -> (n, H, W, 3)
    paint = np.matmul(cover.transpose(0, 2, 3, 1), colours[:, None, :, :])
    paint /= np.maximum(total, 1.0)[..., None]
    background = np.asarray(BACKGROUND_RGB, dtype=np.float32)
    image = background * (1.0 - np.minimum(total, 1.0))[..., None] + paint + noise_img
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def render_scene(
    scene: Scene,
    image_size: int = 32,
    noise: float = NOISE_STD,
    colour_jitter: float = COLOUR_JITTER,
) -> np.ndarray:
    """Render one scene: uint8 (H, W, 3), identical to render_scenes([scene])[0]."""
    return render_scenes([scene], image_size, noise, colour_jitter)[0]
