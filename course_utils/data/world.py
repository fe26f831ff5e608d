"""The Shapes world: its vocabulary of attributes and its scene objects.

A scene is a handful of flat, coloured shapes on a dark background. Every object has
a shape, a colour and a size, and sits at a position in normalised coordinates:

    (0, 0) ------------> x        x, y in [0, 1]; x grows to the right and
      |                           y grows downwards, like image rows and columns,
      |                           so pixel column = x * W and pixel row = y * H.
      v  y

`radius` is the radius of the object's *bounding circle*, in the same normalised
units: every shape is inscribed in the circle of that radius around (x, y). A circle
fills it, a square has its corners on it (half-side radius / sqrt 2) and an
upward-pointing equilateral triangle has its three vertices on it. So, for the same
radius, the areas are ordered circle > square > triangle (pi r^2, 2 r^2, 1.30 r^2),
and "no overlap" and "inside the image" are tests on circles.
"""

from __future__ import annotations

from dataclasses import dataclass

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow", "purple")
SIZES = ("small", "large")
RELATIONS = ("left of", "right of", "above", "below")
COUNT_WORDS = ("zero", "one", "two", "three", "four")  # COUNT_WORDS[n] names n

# RGB in [0, 1]: bright, saturated and far apart, to stand out on the dark background.
COLOUR_RGB = {
    "red": (0.92, 0.16, 0.14),
    "green": (0.18, 0.80, 0.24),
    "blue": (0.20, 0.42, 1.00),
    "yellow": (0.96, 0.86, 0.16),
    "purple": (0.70, 0.24, 0.88),
}
BACKGROUND_RGB = (0.07, 0.07, 0.09)

# Bounding-circle radius of each size, normalised; objects get +- RADIUS_JITTER.
# At 32 px: small ~3.5 px, large ~5.8 px. At 16 px: small ~1.8 px, large ~2.9 px.
SIZE_RADIUS = {"small": 0.11, "large": 0.18}
RADIUS_JITTER = 0.01

# The 15 classes, colour-major: class index = colour_index * len(SHAPES) + shape_index.
CLASSES = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)

# (colour, shape) pairs held out of training for the compositional split: each shape is
# held out once and no colour more than once, so every colour and every shape (but not
# every combination) is still seen in training.
COMPOSITIONAL_PAIRS = (("red", "triangle"), ("green", "square"), ("blue", "circle"))

# A relation is only stated (in a caption) or asked about (in a question) when the
# centres differ by more than this along the relation's axis: about 3 px at 32 px.
RELATION_MARGIN = 0.1

OPPOSITE_RELATION = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}


def plural(shape: str) -> str:
    """Plural of a shape name: "circle" -> "circles"."""
    return shape + "s"


def class_index(colour: str, shape: str) -> int:
    """Class index of a colour-shape pair: colour_index * 3 + shape_index."""
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; expected one of {COLOURS}")
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return COLOURS.index(colour) * len(SHAPES) + SHAPES.index(shape)


def class_name(index: int) -> str:
    """Class name ("red circle", ...) of a class index in [0, 15)."""
    if not 0 <= int(index) < len(CLASSES):
        raise ValueError(f"class index must be in [0, {len(CLASSES)}), got {index}")
    return CLASSES[int(index)]


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene.

    shape, colour, size: names from SHAPES, COLOURS, SIZES.
    x, y: centre in normalised [0, 1] image coordinates (x right, y down).
    radius: bounding-circle radius, normalised (the shape is inscribed in it).
    """

    shape: str
    colour: str
    size: str
    x: float
    y: float
    radius: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; expected one of {COLOURS}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; expected one of {SIZES}")
        if not self.radius > 0:
            raise ValueError(f"radius must be positive, got {self.radius}")

    @property
    def name(self) -> str:
        """Class name, e.g. "red circle"."""
        return f"{self.colour} {self.shape}"

    @property
    def label(self) -> int:
        """Class index, see class_index."""
        return class_index(self.colour, self.shape)

    def matches(
        self, colour: str | None = None, shape: str | None = None, size: str | None = None
    ) -> bool:
        """True when every attribute that is given (not None) equals the object's."""
        return (
            (colour is None or colour == self.colour)
            and (shape is None or shape == self.shape)
            and (size is None or size == self.size)
        )


@dataclass(frozen=True)
class Scene:
    """A scene: a tuple of non-overlapping ShapeObjects (order carries no meaning)."""

    objects: tuple[ShapeObject, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))

    def __len__(self) -> int:
        return len(self.objects)

    def find(
        self, colour: str | None = None, shape: str | None = None, size: str | None = None
    ) -> tuple[ShapeObject, ...]:
        """The objects that have every given attribute (None = any)."""
        return tuple(o for o in self.objects if o.matches(colour, shape, size))

    def count(
        self, colour: str | None = None, shape: str | None = None, size: str | None = None
    ) -> int:
        """How many objects have every given attribute (None = any)."""
        return len(self.find(colour, shape, size))


def relation_holds(
    a: ShapeObject, b: ShapeObject, relation: str, margin: float = RELATION_MARGIN
) -> bool:
    """True when "a <relation> b" holds with a margin between the centres.

    left of: a.x < b.x - margin     right of: a.x > b.x + margin
    above:   a.y < b.y - margin     below:    a.y > b.y + margin   (y grows downwards)
    """
    if relation == "left of":
        return a.x < b.x - margin
    if relation == "right of":
        return a.x > b.x + margin
    if relation == "above":
        return a.y < b.y - margin
    if relation == "below":
        return a.y > b.y + margin
    raise ValueError(f"unknown relation {relation!r}; expected one of {RELATIONS}")


def relation_is_clear(
    a: ShapeObject, b: ShapeObject, relation: str, margin: float = RELATION_MARGIN
) -> bool:
    """True when "a <relation> b" is clearly true or clearly false.

    Clearly false means the opposite relation holds with the margin ("left of" is
    clearly false when a is right of b); when the centres are closer than the margin
    along the relation's axis, the relation is not clear either way.
    """
    return relation_holds(a, b, relation, margin) or relation_holds(
        a, b, OPPOSITE_RELATION[relation], margin
    )
