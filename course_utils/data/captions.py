"""Captions of Shapes-world scenes: varied templates, every statement true.

A caption is a template around a description of the objects:

    template     "a photo of {objects}", "there {be} {objects}", ... (CAPTION_TEMPLATES)
    objects      phrase and phrase and ...             (every object, in a random order)
               | phrase relation phrase                (two-object scenes only)
    phrase       "a" [size] colour shape               ("a small red circle")
               | count [size] colour shapes            ("two red circles", count exact)

so every object of the scene is mentioned, directly or through an exact count, and the
caption is true of the scene: sizes are right, counts are exact, and a relation is only
stated between two objects that are the only ones of their colour and shape, when it
holds with the world's margin (relation_holds). Captions are lower case, words separated
by single spaces, no punctuation, with words from caption_words() only.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import Formatter

import numpy as np

from .world import (
    COLOURS,
    COUNT_WORDS,
    RELATIONS,
    SHAPES,
    SIZES,
    Scene,
    ShapeObject,
    plural,
    relation_holds,
)

# {objects}: the object description; {be}: "is" or "are", agreeing with its first phrase.
CAPTION_TEMPLATES = (
    "{objects}",
    "a photo of {objects}",
    "a picture of {objects}",
    "an image of {objects}",
    "a drawing of {objects}",
    "a scene with {objects}",
    "there {be} {objects}",
    "{objects} on a dark background",
)

# Zero-shot prompts: the one-object captions, with {} a class name such as "red circle".
PROMPT_TEMPLATES = tuple(t.format(objects="a {}", be="is") for t in CAPTION_TEMPLATES)

P_SIZE = 0.5  # probability that a phrase names the size (when it can)
P_RELATION = 0.5  # probability of a relation caption when a two-object scene allows one


def class_prompts(name: str) -> list[str]:
    """The zero-shot prompts of a class name: ["a red circle", "a photo of a red circle", ...]."""
    return [t.format(name) for t in PROMPT_TEMPLATES]


def _phrase(count: int, colour: str, shape: str, size: str | None) -> str:
    """ "a small red circle", "two red circles", ... (size None: not named)."""
    words = ["a" if count == 1 else COUNT_WORDS[count]]
    if size is not None:
        words.append(size)
    words += [colour, shape if count == 1 else plural(shape)]
    return " ".join(words)


def _maybe_size(rng: np.random.Generator, size: str) -> str | None:
    return size if rng.random() < P_SIZE else None


def _list_phrases(scene: Scene, rng: np.random.Generator, order: str = "random"
                  ) -> list[tuple[int, str]]:
    """(count, phrase) for groups of objects that together mention every object once.

    Objects are grouped by colour and shape; a group whose objects all have the same
    size becomes one phrase (its size named with probability P_SIZE); a group of mixed
    sizes becomes either one phrase without the size or one phrase per size, with it.
    The phrases come in a random order, or (order "left to right") by the leftmost of
    their objects; the random stream is the same either way.
    """
    groups: dict[tuple[str, str], list[ShapeObject]] = {}
    for obj in scene.objects:
        groups.setdefault((obj.colour, obj.shape), []).append(obj)
    phrases, lefts = [], []  # lefts: the x of each phrase's leftmost object
    for (colour, shape), objs in groups.items():
        sizes = sorted({o.size for o in objs}, key=SIZES.index)
        if len(sizes) == 1:
            size = _maybe_size(rng, sizes[0])
            phrases.append((len(objs), _phrase(len(objs), colour, shape, size)))
            lefts.append(min(o.x for o in objs))
        elif rng.random() < 0.5:
            phrases.append((len(objs), _phrase(len(objs), colour, shape, None)))
            lefts.append(min(o.x for o in objs))
        else:
            for size in sizes:
                count = sum(o.size == size for o in objs)
                phrases.append((count, _phrase(count, colour, shape, size)))
                lefts.append(min(o.x for o in objs if o.size == size))
    permutation = rng.permutation(len(phrases))
    if order == "left to right":
        permutation = sorted(range(len(phrases)), key=lefts.__getitem__)
    elif order != "random":
        raise ValueError(f"order must be 'random' or 'left to right', got {order!r}")
    return [phrases[i] for i in permutation]


def _relation_description(scene: Scene, rng: np.random.Generator) -> str | None:
    """ "a red circle left of a blue square" for a two-object scene, or None.

    Only when the two objects differ in colour or shape (so each is the only one of its
    kind) and a relation holds between them with the margin.
    """
    if len(scene) != 2:
        return None
    a, b = (scene.objects[i] for i in rng.permutation(2))
    if (a.colour, a.shape) == (b.colour, b.shape):
        return None
    holding = [r for r in RELATIONS if relation_holds(a, b, r)]
    if not holding:
        return None
    relation = holding[rng.integers(len(holding))]
    first = _phrase(1, a.colour, a.shape, _maybe_size(rng, a.size))
    second = _phrase(1, b.colour, b.shape, _maybe_size(rng, b.size))
    return f"{first} {relation} {second}"


def caption_scene(scene: Scene, rng: np.random.Generator, order: str = "random") -> str:
    """One random true caption of a scene.

    Args:
        scene: a Scene of 1-4 objects.
        rng: numpy Generator; the same generator state gives the same caption.
        order: the order of the phrases of a list caption: "random", or "left to right"
            (by each phrase's leftmost object); the template, sizes and relations are drawn
            the same either way.
    Returns:
        e.g. "a photo of a small red circle", "two red circles and a blue square",
        "there is a green triangle left of a large yellow square".
    """
    if len(scene) == 0:
        raise ValueError("cannot caption an empty scene")
    template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
    objects = _relation_description(scene, rng) if rng.random() < P_RELATION else None
    if objects is not None:
        be = "is"
    else:
        phrases = _list_phrases(scene, rng, order)
        objects = " and ".join(p for _, p in phrases)
        be = "is" if phrases[0][0] == 1 else "are"
    return template.format(objects=objects, be=be)


def caption_scenes(scenes: Sequence[Scene], seed: int | Sequence[int] = 0,
                   order: str = "random") -> list[str]:
    """One caption per scene, drawn in order from np.random.default_rng(seed); ``order`` as
    in caption_scene."""
    rng = np.random.default_rng(seed)
    return [caption_scene(scene, rng, order) for scene in scenes]


def template_words(templates: Sequence[str]) -> set[str]:
    """The literal words of format templates (their {fields} left out)."""
    words: set[str] = set()
    for template in templates:
        for literal, _, _, _ in Formatter().parse(template):
            words.update(literal.split())
    return words


def caption_words() -> frozenset[str]:
    """Every word a caption or a prompt can contain (derived from the grammar above)."""
    words = template_words(CAPTION_TEMPLATES) | template_words(PROMPT_TEMPLATES)
    words |= {"is", "are", "a", "and"} | set(COUNT_WORDS[2:])
    words |= set(SIZES) | set(COLOURS) | set(SHAPES) | {plural(s) for s in SHAPES}
    words |= {w for r in RELATIONS for w in r.split()}
    return frozenset(words)
