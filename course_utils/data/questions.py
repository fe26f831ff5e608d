"""Visual questions about Shapes-world scenes, with their answers.

Five question types, each asked only when it has one unambiguous answer:

    count     "how many red objects are there"          -> "zero" .. "four"
    colour    "what colour is the large circle"         -> a colour
    shape     "what shape is the red object"            -> a shape
    exists    "is there a small blue triangle"          -> "yes" / "no"   (~50/50)
    relation  "is the red circle left of the blue square" -> "yes" / "no" (~50/50)

A colour (shape) question refers to an object that is the only one of its shape
(colour), with its size when that is needed to make it the only one; a relation question
to two objects that are each the only one of their colour and shape, and only when the
relation is clearly true or clearly false (the opposite relation holds with the margin).
Answers come from the closed, ordered list ANSWERS (15 classes for a VQA head). Questions
are lower case, without a question mark, with words from question_words() only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .captions import template_words
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
    relation_is_clear,
)

QUESTION_TYPES = ("count", "colour", "shape", "exists", "relation")
ANSWERS = ("no", "yes") + COUNT_WORDS + COLOURS + SHAPES

COUNT_TEMPLATES = (
    "how many objects are there",
    "how many {shapes} are there",
    "how many {colour} objects are there",
    "how many {colour} {shapes} are there",
    "how many {size} objects are there",
)
COLOUR_TEMPLATE = "what colour is the {ref}"  # ref: [size] shape
SHAPE_TEMPLATE = "what shape is the {ref} object"  # ref: [size] colour
EXISTS_TEMPLATE = "is there a {ref}"  # ref: [size] colour shape
RELATION_TEMPLATE = "is the {a} {relation} the {b}"  # a, b: colour shape

P_FROM_SCENE = 0.5  # count questions: the attribute is taken from an object of the scene
P_SIZE = 0.3  # exists / colour / shape questions: name the size even when not needed


@dataclass(frozen=True)
class Question:
    """A question about a scene, its answer (one of ANSWERS) and its type.

    objects: the objects the question singles out, in the order it names them: (a, b) for
    a relation question "is the a ... the b", (the object,) for a colour or shape question,
    () for count and exists questions (they name a kind, not an object).
    """

    question: str
    answer: str
    qtype: str
    objects: tuple[ShapeObject, ...] = ()


def answer_index(answer: str) -> int:
    """Index of an answer in ANSWERS."""
    if answer not in ANSWERS:
        raise ValueError(f"unknown answer {answer!r}; expected one of {ANSWERS}")
    return ANSWERS.index(answer)


def _choice(rng: np.random.Generator, items: Sequence):
    return items[rng.integers(len(items))]


def _count_question(scene: Scene, rng: np.random.Generator, pairs) -> Question:
    variant = int(rng.integers(len(COUNT_TEMPLATES)))
    template = COUNT_TEMPLATES[variant]
    obj = _choice(rng, scene.objects)
    from_scene = rng.random() < P_FROM_SCENE
    colour = shape = size = None
    if variant == 1:
        shape = obj.shape if from_scene else _choice(rng, SHAPES)
    elif variant == 2:
        colour = obj.colour if from_scene else _choice(rng, COLOURS)
    elif variant == 3:
        colour, shape = (obj.colour, obj.shape) if from_scene else _choice(rng, pairs)
    elif variant == 4:
        size = obj.size if from_scene else _choice(rng, SIZES)
    text = template.format(shapes=plural(shape or ""), colour=colour, size=size)
    return Question(text, COUNT_WORDS[scene.count(colour, shape, size)], "count")


def _unique_reference(scene: Scene, obj, attribute: str, rng: np.random.Generator):
    """The size (or "" for none) that, with `attribute`, picks out obj alone, or None."""
    key = {attribute: getattr(obj, attribute)}
    alone = scene.count(**key) == 1
    alone_with_size = scene.count(size=obj.size, **key) == 1
    if alone and not (alone_with_size and rng.random() < P_SIZE):
        return ""
    return obj.size + " " if alone_with_size else None


def _attribute_question(scene: Scene, rng: np.random.Generator, qtype: str):
    """colour: ask the colour of the only <size> shape; shape: the shape of a colour."""
    known, asked = ("shape", "colour") if qtype == "colour" else ("colour", "shape")
    template = COLOUR_TEMPLATE if qtype == "colour" else SHAPE_TEMPLATE
    for i in rng.permutation(len(scene)):
        obj = scene.objects[i]
        size = _unique_reference(scene, obj, known, rng)
        if size is not None:
            text = template.format(ref=size + getattr(obj, known))
            return Question(text, getattr(obj, asked), qtype, (obj,))
    return None


def _exists_question(scene: Scene, rng: np.random.Generator, pairs) -> Question | None:
    want_yes = rng.random() < 0.5
    with_size = rng.random() < P_SIZE
    if want_yes:
        obj = _choice(rng, scene.objects)
        size, colour, shape = (obj.size if with_size else None), obj.colour, obj.shape
    else:
        absent = [
            (size, colour, shape)
            for colour, shape in pairs
            for size in (SIZES if with_size else (None,))
            if scene.count(colour, shape, size) == 0
        ]
        if not absent:
            return None
        size, colour, shape = _choice(rng, absent)
    ref = " ".join(w for w in (size, colour, shape) if w is not None)
    answer = "yes" if scene.count(colour, shape, size) > 0 else "no"
    return Question(EXISTS_TEMPLATE.format(ref=ref), answer, "exists")


def _relation_question(scene: Scene, rng: np.random.Generator) -> Question | None:
    want_yes = rng.random() < 0.5
    unique = [o for o in scene.objects if scene.count(o.colour, o.shape) == 1]
    candidates = [
        (a, b, relation)
        for a in unique
        for b in unique
        if a is not b
        for relation in RELATIONS
        if relation_is_clear(a, b, relation) and relation_holds(a, b, relation) == want_yes
    ]
    if not candidates:
        return None
    a, b, relation = _choice(rng, candidates)
    text = RELATION_TEMPLATE.format(a=a.name, relation=relation, b=b.name)
    return Question(text, "yes" if relation_holds(a, b, relation) else "no", "relation", (a, b))


def make_question(
    scene: Scene,
    qtype: str,
    rng: np.random.Generator,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> Question | None:
    """A random question of type qtype about the scene, or None if none can be asked.

    Args:
        scene: a Scene of 1-4 objects.
        qtype: one of QUESTION_TYPES.
        rng: numpy Generator; the same generator state gives the same question.
        pairs: the (colour, shape) pairs that count and exists questions may name when
            they are not in the scene (default: all 15). Pass the split's allowed pairs
            so that training questions never name a held-out pair.
    Returns:
        Question(question, answer, qtype), or None (e.g. a relation question about a
        one-object scene, a colour question when no object is the only one of its shape).
    """
    if qtype not in QUESTION_TYPES:
        raise ValueError(f"unknown question type {qtype!r}; expected one of {QUESTION_TYPES}")
    if len(scene) == 0:
        raise ValueError("cannot ask about an empty scene")
    pairs = [(c, s) for c in COLOURS for s in SHAPES] if pairs is None else list(pairs)
    if qtype == "count":
        return _count_question(scene, rng, pairs)
    if qtype in ("colour", "shape"):
        return _attribute_question(scene, rng, qtype)
    if qtype == "exists":
        return _exists_question(scene, rng, pairs)
    return _relation_question(scene, rng)


def question_words() -> frozenset[str]:
    """Every word a question or an answer can contain (derived from the templates)."""
    templates = COUNT_TEMPLATES + (COLOUR_TEMPLATE, SHAPE_TEMPLATE, EXISTS_TEMPLATE)
    words = template_words(templates + (RELATION_TEMPLATE,))
    words |= set(SIZES) | set(COLOURS) | set(SHAPES) | {plural(s) for s in SHAPES}
    words |= {w for r in RELATIONS for w in r.split()}
    words |= {w for a in ANSWERS for w in a.split()}
    return frozenset(words)
