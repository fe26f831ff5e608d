"""Tests of the caption parser and verifier (course_utils.data.caption_truth).

The world's own captions are the reference: every caption caption_scene writes must parse
back to itself and be true and complete; the same caption with any one claim changed
(colour, shape, size, count, relation) must be false, with a failure that names the
change; with one phrase dropped, true but incomplete. Text outside the grammar is
reported as unparseable, never raised.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from course_utils import data
from course_utils.data import (
    CAPTION_TEMPLATES,
    COLOURS,
    SHAPES,
    SIZES,
    Claim,
    ParsedCaption,
    Scene,
    ShapeObject,
    caption_truth,
    parse_caption,
)
from course_utils.data.world import OPPOSITE_RELATION, plural

CAPTIONS_PER_SCENE = 3
MIN_CASES = 200  # each one-claim change is tried on at least this many generated captions


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def generated():
    """(scene, caption) pairs: 2,000 scenes (1-4 objects, 3 splits, 4 seeds), 3 captions each."""
    scenes = (
        data.generate_scenes(500, seed=0, split="train")
        + data.generate_scenes(500, seed=1, split="train")
        + data.generate_scenes(500, seed=2, split="test")
        + data.generate_scenes(500, seed=3, split="compositional")
    )
    pairs = []
    for k in range(CAPTIONS_PER_SCENE):
        pairs += zip(scenes, data.caption_scenes(scenes, seed=k), strict=True)
    return pairs


def scene_of(*objects):
    """A scene from (shape, colour, size, x, y) tuples."""
    return Scene(
        tuple(
            ShapeObject(s, c, z, x, y, 0.1 if z == "small" else 0.17) for s, c, z, x, y in objects
        )
    )


# Two red circles (small left, large right), a small yellow square at the bottom left.
MIXED = scene_of(
    ("circle", "red", "small", 0.2, 0.2),
    ("circle", "red", "large", 0.7, 0.25),
    ("square", "yellow", "small", 0.2, 0.75),
)
FOUR = scene_of(*[("triangle", "green", "large", x, y) for x in (0.25, 0.75) for y in (0.25, 0.75)])
# A small red circle at the top left, a large blue square at the bottom right.
PAIR = scene_of(("circle", "red", "small", 0.2, 0.2), ("square", "blue", "large", 0.7, 0.7))


def verdict(text, scene):
    """(true, complete, failures joined by "; ") of a caption within the grammar."""
    truth = caption_truth(text, scene)
    assert truth.parsed, text
    return truth.true, truth.complete, "; ".join(truth.failures)


# ------------------------------------------------------- the world's captions are true


def test_every_generated_caption_is_true_and_complete(generated):
    assert len(generated) == 2000 * CAPTIONS_PER_SCENE
    for scene, caption in generated:
        truth = caption_truth(caption, scene)
        assert truth.parsed and truth.true and truth.complete, (caption, truth, scene)
        assert truth.failures == ()
        assert truth.parse.text == caption  # the parse keeps every word


def test_generated_captions_cover_the_grammar(generated):
    parses = [parse_caption(c) for _, c in generated]
    assert set(Counter(p.template for p in parses)) == set(CAPTION_TEMPLATES)
    claims = [c for p in parses for c in p.claims]
    assert {p.relation for p in parses} == {None, "left of", "right of", "above", "below"}
    assert {c.count for c in claims} >= {1, 2, 3}  # "four": four alike objects, rare
    assert {c.size for c in claims} == {None, *SIZES}
    split = [p for p in parses if len({(c.colour, c.shape) for c in p.claims}) < len(p.claims)]
    assert split  # a mixed-size group written as one phrase per size


@pytest.mark.parametrize("template", CAPTION_TEMPLATES)
def test_every_template_is_read(template):
    cases = [
        (PAIR, "a red circle and a blue square", "is"),
        (PAIR, "a large blue square and a small red circle", "is"),
        (PAIR, "a small red circle left of a large blue square", "is"),
        (PAIR, "a blue square below a red circle", "is"),
        (MIXED, "two red circles and a small yellow square", "are"),
        (FOUR, "four large green triangles", "are"),
        (MIXED, "a large red circle and a small red circle and a yellow square", "is"),
    ]
    for scene, objects, be in cases:
        text = template.format(objects=objects, be=be)
        truth = caption_truth(text, scene)
        assert (truth.parsed, truth.true, truth.complete) == (True, True, True), text
        assert truth.parse.template == template and truth.parse.text == text


def test_parse_gives_the_claims():
    assert parse_caption("there are two small red circles and a blue square") == ParsedCaption(
        "there {be} {objects}",
        (Claim(2, "small", "red", "circle"), Claim(1, None, "blue", "square")),
    )
    assert parse_caption("a green triangle above a large purple circle on a dark background") == (
        ParsedCaption(
            "{objects} on a dark background",
            (Claim(1, None, "green", "triangle"), Claim(1, "large", "purple", "circle")),
            "above",
        )
    )


# ------------------------------------------------ one claim changed -> false, and named


def _next(values, value):
    return values[(values.index(value) + 1) % len(values)]


def change_colour(parse, claim):
    new = claim._replace(colour=_next(COLOURS, claim.colour))
    return new, f"{new.colour} {new.shape}"


def change_shape(parse, claim):
    new = claim._replace(shape=_next(SHAPES, claim.shape))
    return new, f"{new.colour} {new.shape}"


def change_size(parse, claim):
    if claim.size is None:
        return None
    new = claim._replace(size=_next(SIZES, claim.size))
    return new, f"{new.size} {new.colour} {new.shape}"


def count_two_to_three(parse, claim):
    if claim.count != 2:
        return None
    new = claim._replace(count=3)
    return new, new.text


def count_a_to_two(parse, claim):
    if claim.count != 1 or parse.relation is not None:  # "two ... left of" is not grammar
        return None
    new = claim._replace(count=2)
    return new, new.text


@pytest.mark.parametrize(
    "change", [change_colour, change_shape, change_size, count_two_to_three, count_a_to_two]
)
def test_one_changed_claim_is_false_and_named(generated, change):
    cases = 0
    for i, (scene, caption) in enumerate(generated):
        parse = parse_caption(caption)
        j = i % len(parse.claims)
        changed = change(parse, parse.claims[j])
        if changed is None:
            continue
        new, words = changed
        claims = parse.claims[:j] + (new,) + parse.claims[j + 1 :]
        text = replace(parse, claims=claims).text
        truth = caption_truth(text, scene)
        assert truth.parsed and truth.parse.claims == claims, text
        assert not truth.true, (caption, text, scene)
        assert any(words in f for f in truth.failures), (text, words, truth.failures)
        cases += 1
    assert cases >= MIN_CASES


@pytest.mark.parametrize("relation", ["left of", "above"])
def test_opposite_relation_is_false_and_named(generated, relation):
    """left of -> right of, above -> below (and back), on every generated relation caption."""
    cases = 0
    for scene, caption in generated:
        parse = parse_caption(caption)
        if parse.relation not in (relation, OPPOSITE_RELATION[relation]):
            continue
        new = replace(parse, relation=OPPOSITE_RELATION[parse.relation])
        truth = caption_truth(new.text, scene)
        a, b = new.claims
        assert truth.parsed and not truth.true, (caption, new.text, scene)
        assert f"says {a.name} {new.relation} {b.name}: it is not" in truth.failures
        cases += 1
    assert cases >= MIN_CASES


def test_dropping_a_phrase_is_true_but_incomplete(generated):
    cases = 0
    for i, (scene, caption) in enumerate(generated):
        parse = parse_caption(caption)
        if parse.relation is not None or len(parse.claims) < 2:
            continue
        j = i % len(parse.claims)
        dropped = parse.claims[j]
        text = replace(parse, claims=parse.claims[:j] + parse.claims[j + 1 :]).text
        truth = caption_truth(text, scene)
        assert truth.parsed and truth.true and not truth.complete, (caption, text, scene)
        assert all(f.startswith("does not mention ") for f in truth.failures)
        assert any(f"{dropped.colour} {dropped.shape}" in f for f in truth.failures)
        cases += 1
    assert cases >= MIN_CASES


# ------------------------------------------------------- the semantics, case by case

# caption about MIXED, true, complete, its failures joined by "; "
LIST_CASES = [
    ("two red circles and a yellow square", True, True, ""),
    ("a small red circle and a large red circle and a small yellow square", True, True, ""),
    (
        "a red circle and a yellow square",
        False,
        False,
        "says a red circle, the scene has two red circles; "
        "does not mention one of the two red circles",
    ),
    (  # a wrong count is false, but nothing is left out
        "three red circles and a yellow square",
        False,
        True,
        "says three red circles, the scene has two red circles",
    ),
    (
        "two red circles and a large yellow square",
        False,
        False,
        "says a large yellow square, it is small; does not mention the small yellow square",
    ),
    (
        "two red circles and a yellow square and a green triangle",
        False,
        True,
        "no green triangle in the scene",
    ),
    ("two red circles", True, False, "does not mention the yellow square"),
    (  # a mixed-size group named in part: true, but incomplete
        "a small red circle and a yellow square",
        True,
        False,
        "does not mention the large red circle",
    ),
    (
        "two small red circles and a yellow square",
        False,
        False,
        "says two small red circles, the scene has one small red circle; "
        "does not mention the large red circle",
    ),
    (  # one colour and shape named twice: false, even when each phrase alone would hold
        "a red circle and a red circle and a yellow square",
        False,
        True,
        "names red circles more than once: a red circle and a red circle; "
        "says a red circle, the scene has two red circles",
    ),
    (
        "two red circles and a small red circle and a yellow square",
        False,
        True,
        "names red circles more than once: two red circles and a small red circle",
    ),
    (
        "a small red circle and a small red circle and a yellow square",
        False,
        False,
        "names red circles more than once: a small red circle and a small red circle; "
        "does not mention the large red circle",
    ),
    (  # a relation needs referents unique by colour and shape
        "a red circle left of a yellow square",
        False,
        False,
        "says a red circle, the scene has two red circles; "
        "does not mention one of the two red circles",
    ),
]


@pytest.mark.parametrize("text, true, complete, failures", LIST_CASES)
def test_semantics_case_by_case(text, true, complete, failures):
    assert verdict(text, MIXED) == (true, complete, failures)


def test_relation_semantics():
    assert verdict("a red circle left of a blue square", PAIR) == (True, True, "")
    assert verdict("a red circle above a blue square", PAIR) == (True, True, "")
    assert verdict("a red circle right of a blue square", PAIR) == (
        False,
        True,
        "says red circle right of blue square: it is not",
    )
    assert verdict("a large red circle left of a blue square", PAIR) == (
        False,
        False,
        "says a large red circle, it is small; does not mention the small red circle",
    )
    assert verdict("a red circle left of a red circle", PAIR) == (
        False,
        False,
        "says red circle left of red circle: a relation needs two different objects; "
        "does not mention the blue square",
    )
    # closer than RELATION_MARGIN along the axis: not stated, so false
    near = scene_of(("circle", "red", "small", 0.45, 0.2), ("square", "blue", "small", 0.5, 0.7))
    assert verdict("a red circle left of a blue square", near) == (
        False,
        True,
        "says red circle left of blue square: it is not",
    )
    # true of its two objects, but a third is left out
    three = scene_of(
        *[(o.shape, o.colour, o.size, o.x, o.y) for o in PAIR.objects],
        ("triangle", "green", "small", 0.8, 0.2),
    )
    assert verdict("a red circle left of a blue square", three) == (
        True,
        False,
        "does not mention the green triangle",
    )


# ------------------------------------------------- text outside the grammar, bad input

UNPARSEABLE = [
    "",
    " ",
    "<unk>",
    "a red",
    "a photo of",
    "hello",
    "two red circle",
    "a red circles",
    "one red circle",
    "zero red circles",
    "five red circles",
    "an red circle",
    "a red circle and",
    "and a red circle",
    "a red circle and and a blue square",
    "a  red circle",
    " a red circle",
    "a red circle ",
    "a red circle\n",
    "a\tred circle",
    "A red circle",
    "A RED CIRCLE",
    "a red circle.",
    "a <unk> circle",
    "a red <unk>",
    "a big red circle",
    "a red small circle",
    "a small large red circle",
    "there is two red circles",
    "there are a red circle",
    "there a red circle",
    "a photo of a red circle on a dark background",
    "a red circle on a dark background on a dark background",
    "two red circles left of a blue square",
    "a red circle left of two blue squares",
    "a red circle left of",
    "left of a red circle",
    "a red circle left of a blue square and a green circle",
    "a red circle left of a blue square left of a green circle",
    "a red circle left a blue square",
    "a red circle next to a blue square",
    "a red circle is left of a blue square",
]


@pytest.mark.parametrize("text", UNPARSEABLE)
def test_text_outside_the_grammar_is_reported(text):
    assert parse_caption(text) is None
    truth = caption_truth(text, PAIR)
    assert (truth.parsed, truth.true, truth.complete, truth.parse) == (False, False, False, None)
    assert len(truth.failures) == 1 and "outside the caption grammar" in truth.failures[0]


def test_random_word_strings_never_raise(generated):
    """Random and near-miss word strings: a parse is always the text itself, or None."""
    rng = np.random.default_rng(0)
    vocabulary = sorted(data.caption_words()) + ["<unk>", "", "one", "zero"]
    texts = [" ".join(rng.choice(vocabulary, size=rng.integers(0, 12))) for _ in range(3000)]
    for _, caption in generated[:2000]:  # drop, repeat or replace one word
        words = caption.split(" ")
        k = rng.integers(len(words))
        texts.append(" ".join(words[:k] + words[k + 1 :]))
        texts.append(" ".join(words[: k + 1] + words[k:]))
        texts.append(" ".join(words[:k] + [str(rng.choice(vocabulary))] + words[k + 1 :]))
    parsed = 0
    for text in texts:
        truth = caption_truth(text, PAIR)
        assert truth.parsed == (truth.parse is not None)
        if truth.parse is not None:
            assert truth.parse.text == text
            parsed += 1
    assert 0 < parsed < len(texts) / 2  # both outcomes occur


def test_a_hand_made_scene_beyond_four_objects_is_checked():
    """Scene does not limit its objects; numbers past "four" are written as digits."""
    six = scene_of(*[("circle", "red", "small", x / 7, 0.5) for x in range(1, 7)])
    assert verdict("four red circles", six) == (
        False,
        False,
        "says four red circles, the scene has 6 red circles; "
        "does not mention two of the 6 red circles",
    )
    assert verdict("a red circle left of a blue square", six)[:2] == (False, False)


@pytest.mark.parametrize("text", [None, 3, b"a red circle", ["a red circle"]])
def test_a_caption_that_is_not_a_string_raises(text):
    with pytest.raises(ValueError, match="must be a str"):
        caption_truth(text, PAIR)
    with pytest.raises(ValueError, match="must be a str"):
        parse_caption(text)


def test_a_bad_scene_raises():
    with pytest.raises(ValueError, match="empty scene"):
        caption_truth("a red circle", Scene(()))
    with pytest.raises(ValueError, match="must be a Scene"):
        caption_truth("a red circle", list(PAIR.objects))
    with pytest.raises(ValueError, match="must be a Scene"):
        caption_truth("a red circle", None)


def test_claim_text_is_the_world_phrase():
    assert Claim(1, "small", "red", "circle").text == "a small red circle"
    assert Claim(3, None, "blue", "triangle").text == f"three blue {plural('triangle')}"
