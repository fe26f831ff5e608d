"""Tests of the Shapes world (course_utils.data).

Captions and answers are checked against their scenes by recomputing them here,
independently of course_utils.data: a small regex grammar parses each caption and
question, and the test derives the truth from the objects' attributes and coordinates.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest
import torch

from course_utils import data
from course_utils.data import (
    ANSWERS,
    CLASSES,
    COLOUR_RGB,
    COLOURS,
    COMPOSITIONAL_PAIRS,
    PROMPT_TEMPLATES,
    QUESTION_TYPES,
    RELATION_MARGIN,
    SHAPES,
    SIZES,
    Scene,
    ShapeObject,
)

N_SCENES = 3000
COL = "|".join(COLOURS)
SHP = "|".join(SHAPES)
SZ = "|".join(SIZES)
REL = "left of|right of|above|below"
NUMBERS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4}
HELD_OUT_NAMES = ("red triangle", "green square", "blue circle")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scenes():
    return data.generate_scenes(N_SCENES, seed=0, split="train")


@pytest.fixture(scope="module")
def captions(scenes):
    return data.caption_scenes(scenes, seed=0)


@pytest.fixture(scope="module")
def vqa():
    return data.ShapesVQA(split="train", size=N_SCENES, seed=0)


# ------------------------------------------------- an independent caption/answer oracle


def holds(a, b, relation):
    """Truth of "a <relation> b", recomputed from the coordinates (y grows downwards)."""
    m = RELATION_MARGIN
    return {
        "left of": b.x - a.x > m,
        "right of": a.x - b.x > m,
        "above": b.y - a.y > m,
        "below": a.y - b.y > m,
    }[relation]


def matches(obj, size, colour, shape):
    return obj.colour == colour and obj.shape == shape and size in (None, obj.size)


def one_to_one(items, objects):
    """True when items (size|None, colour, shape) can be paired one-to-one with objects."""
    if len(items) != len(objects):
        return False
    return any(
        all(matches(o, *item) for item, o in zip(items, perm, strict=True))
        for perm in itertools.permutations(objects)
    )


FRAMES = (
    "a photo of ",
    "a picture of ",
    "an image of ",
    "a drawing of ",
    "a scene with ",
    "there is ",
    "there are ",
)
SUFFIX = " on a dark background"
PHRASE = re.compile(rf"(a|two|three|four) (?:({SZ}) )?({COL}) ({SHP})(s?)")
RELATION_BODY = re.compile(rf"a (?:({SZ}) )?({COL}) ({SHP}) ({REL}) a (?:({SZ}) )?({COL}) ({SHP})")


def split_frame(caption):
    """(frame, body): the template words around the object description."""
    for prefix in FRAMES:
        if caption.startswith(prefix):
            return prefix.strip(), caption[len(prefix) :]
    if caption.endswith(SUFFIX):
        return "background", caption[: -len(SUFFIX)]
    return "", caption


def caption_errors(caption, scene):
    """Why a caption is not a true, complete description of the scene ([] if it is)."""
    if caption != caption.strip() or "  " in caption or caption != caption.lower():
        return ["not lower case words separated by single spaces"]
    if not re.fullmatch(r"[a-z ]+", caption):
        return ["characters other than letters and spaces"]
    frame, body = split_frame(caption)
    rel = RELATION_BODY.fullmatch(body)
    if rel:
        size_a, col_a, shp_a, relation, size_b, col_b, shp_b = rel.groups()
        if frame == "there are":
            return ["'there are' before a single object"]
        if len(scene) != 2:
            return ["relation caption does not mention every object"]
        found_a = [o for o in scene.objects if o.colour == col_a and o.shape == shp_a]
        found_b = [o for o in scene.objects if o.colour == col_b and o.shape == shp_b]
        if len(found_a) != 1 or len(found_b) != 1 or found_a[0] is found_b[0]:
            return ["relation referents are not unique"]
        a, b = found_a[0], found_b[0]
        if size_a not in (None, a.size) or size_b not in (None, b.size):
            return ["wrong size"]
        return [] if holds(a, b, relation) else [f"relation {relation!r} does not hold"]
    items, first_plural = [], None
    for part in body.split(" and "):
        m = PHRASE.fullmatch(part)
        if not m:
            return [f"unparsable phrase {part!r}"]
        count_word, size, colour, shape, s = m.groups()
        count = 1 if count_word == "a" else NUMBERS[count_word]
        if (count > 1) != (s == "s"):
            return [f"number agreement in {part!r}"]
        first_plural = count > 1 if first_plural is None else first_plural
        items += [(size, colour, shape)] * count
    if frame == "there is" and first_plural or frame == "there are" and not first_plural:
        return ["is/are agreement"]
    if not one_to_one(items, scene.objects):
        return ["the phrases do not describe exactly the scene's objects"]
    return []


def recompute_answer(question, scene):
    """(question type, answer) from the question text and the scene's objects."""
    objs = scene.objects

    def only(found):
        assert len(found) == 1, f"{question!r} refers to {len(found)} objects"
        return found[0]

    if m := re.fullmatch(
        rf"how many (?:({SZ}) )?(?:({COL}) )?(?:({SHP})s|objects) are there", question
    ):
        size, colour, shape = m.groups()
        n = sum(
            (size is None or o.size == size)
            and (colour is None or o.colour == colour)
            and (shape is None or o.shape == shape)
            for o in objs
        )
        return "count", ["zero", "one", "two", "three", "four"][n]
    if m := re.fullmatch(rf"what colour is the (?:({SZ}) )?({SHP})", question):
        size, shape = m.groups()
        found = [o for o in objs if o.shape == shape and size in (None, o.size)]
        return "colour", only(found).colour
    if m := re.fullmatch(rf"what shape is the (?:({SZ}) )?({COL}) object", question):
        size, colour = m.groups()
        found = [o for o in objs if o.colour == colour and size in (None, o.size)]
        return "shape", only(found).shape
    if m := re.fullmatch(rf"is there a (?:({SZ}) )?({COL}) ({SHP})", question):
        size, colour, shape = m.groups()
        return "exists", "yes" if any(matches(o, size, colour, shape) for o in objs) else "no"
    if m := re.fullmatch(rf"is the ({COL}) ({SHP}) ({REL}) the ({COL}) ({SHP})", question):
        col_a, shp_a, relation, col_b, shp_b = m.groups()
        a = only([o for o in objs if (o.colour, o.shape) == (col_a, shp_a)])
        b = only([o for o in objs if (o.colour, o.shape) == (col_b, shp_b)])
        opposite = {
            "left of": "right of",
            "right of": "left of",
            "above": "below",
            "below": "above",
        }[relation]
        assert holds(a, b, relation) or holds(a, b, opposite), f"{question!r} is ambiguous"
        return "relation", "yes" if holds(a, b, relation) else "no"
    raise AssertionError(f"unparsable question {question!r}")


# ------------------------------------------------------------------------ the world


def test_classes_are_colour_major():
    assert len(CLASSES) == 15
    for c, colour in enumerate(COLOURS):
        for s, shape in enumerate(SHAPES):
            assert data.class_index(colour, shape) == c * 3 + s
            assert data.class_name(c * 3 + s) == f"{colour} {shape}" == CLASSES[c * 3 + s]


def test_compositional_pairs_hold_each_shape_once():
    shapes = [s for _, s in COMPOSITIONAL_PAIRS]
    colours = [c for c, _ in COMPOSITIONAL_PAIRS]
    assert sorted(shapes) == sorted(SHAPES)
    assert len(set(colours)) == len(colours) == 3


def test_colours_are_distinct_and_bright():
    rgb = np.array([COLOUR_RGB[c] for c in COLOURS])
    distances = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert distances[~np.eye(len(COLOURS), dtype=bool)].min() > 0.3
    assert rgb.max(axis=1).min() > 0.6


def test_relation_holds_with_margin():
    a = ShapeObject("circle", "red", "small", 0.2, 0.5, 0.1)
    b = ShapeObject("square", "blue", "small", 0.6, 0.5, 0.1)
    near = ShapeObject("square", "blue", "small", 0.2 + RELATION_MARGIN / 2, 0.8, 0.1)
    assert data.relation_holds(a, b, "left of") and data.relation_holds(b, a, "right of")
    assert not data.relation_holds(a, b, "right of") and not data.relation_holds(a, b, "above")
    assert data.relation_holds(a, near, "above") and data.relation_holds(near, a, "below")
    assert not data.relation_holds(a, near, "left of")  # closer than the margin
    assert data.relation_is_clear(a, b, "right of")  # clearly false
    assert not data.relation_is_clear(a, near, "left of")
    assert data.relation_is_clear(a, near, "below")


# ----------------------------------------------------------------------- scenes


def test_same_seed_same_data_other_seed_or_split_differs(scenes, captions):
    again = data.generate_scenes(N_SCENES, seed=0, split="train")
    assert again == scenes
    assert data.caption_scenes(again, seed=0) == captions
    assert np.array_equal(data.render_scenes(again[:50]), data.render_scenes(scenes[:50]))
    assert data.generate_scenes(50, seed=1) != scenes[:50]
    assert data.generate_scenes(50, seed=0, split="test") != scenes[:50]
    assert data.caption_scenes(scenes, seed=1) != captions
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    questions_a = [data.make_question(s, "count", rng_a) for s in scenes[:100]]
    questions_b = [data.make_question(s, "count", rng_b) for s in scenes[:100]]
    assert questions_a == questions_b


def test_golden_numbers_of_seed_0():
    """Seed 0 is pinned: a change here changes every notebook's data (update on purpose)."""
    scenes = data.generate_scenes(200, seed=0)
    assert [len(s) for s in scenes[:12]] == [4, 3, 4, 2, 4, 3, 4, 1, 4, 2, 2, 3]
    first = scenes[0].objects[0]
    assert (first.shape, first.colour, first.size) == ("square", "yellow", "small")
    assert (first.x, first.y, first.radius) == pytest.approx((0.56864, 0.75454, 0.11459), abs=1e-5)
    assert data.caption_scenes(scenes[:2], seed=0) == [
        "there is a small yellow square and a red circle and a small green circle"
        " and a yellow triangle",
        "a scene with a large purple circle and a blue triangle and a small purple circle",
    ]
    images = data.render_scenes(scenes).astype(float)
    assert images.mean() == pytest.approx(32.367, abs=0.05)
    assert images.std() == pytest.approx(43.880, abs=0.05)


def test_datasets_are_deterministic():
    a = data.ShapesVQA("test", size=40, seed=3)
    b = data.ShapesVQA("test", size=40, seed=3)
    c = data.ShapesVQA("test", size=40, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.answers, b.answers)
    assert a.questions == b.questions
    assert not torch.equal(a.images, c.images)
    d, e = data.ShapesCaptions(size=40, seed=3), data.ShapesCaptions(size=40, seed=3)
    assert torch.equal(d.images, e.images) and d.captions == e.captions


def test_objects_inside_and_apart(scenes):
    crowded = data.generate_scenes(500, seed=1, num_objects=4, sizes=("large",))
    for scene in scenes + crowded:
        assert 1 <= len(scene) <= 4
        for o in scene.objects:
            assert o.radius <= o.x <= 1 - o.radius and o.radius <= o.y <= 1 - o.radius
        for a, b in itertools.combinations(scene.objects, 2):
            assert np.hypot(a.x - b.x, a.y - b.y) > a.radius + b.radius


def test_number_of_objects_and_sizes():
    assert {len(s) for s in data.generate_scenes(200, num_objects=3)} == {3}
    two_three = data.generate_scenes(300, num_objects=(2, 3), sizes=("small",))
    assert {len(s) for s in two_three} == {2, 3}
    assert {o.size for s in two_three for o in s.objects} == {"small"}
    small = [o.radius for s in two_three for o in s.objects]
    large = [o.radius for s in data.generate_scenes(300, sizes=("large",)) for o in s.objects]
    assert max(small) < min(large)
    assert np.std(small) > 0  # a little jitter


def test_colours_shapes_sizes_roughly_uniform(scenes):
    objects = [o for s in scenes for o in s.objects]
    for attribute, values in (("colour", COLOURS), ("shape", SHAPES), ("size", SIZES)):
        counts = Counter(getattr(o, attribute) for o in objects)
        assert set(counts) == set(values)
        freq = np.array([counts[v] for v in values]) / len(objects)
        assert np.abs(freq - 1 / len(values)).max() < 0.03, (attribute, freq)
    num = Counter(len(s) for s in scenes)
    assert min(num.values()) > 0.2 * len(scenes)


def test_compositional_pairs_held_out(scenes):
    held = set(COMPOSITIONAL_PAIRS)
    test = data.generate_scenes(1000, split="test")
    for scene in scenes + test:
        assert not {(o.colour, o.shape) for o in scene.objects} & held
    assert len({(o.colour, o.shape) for s in scenes for o in s.objects}) == 12
    comp = data.generate_scenes(1000, split="compositional")
    for scene in comp:
        assert {(o.colour, o.shape) for o in scene.objects} & held
    assert {(o.colour, o.shape) for s in comp for o in s.objects} >= held
    everything = data.generate_scenes(1000, hold_out=False)
    assert {o.label for s in everything for o in s.objects} == set(range(15))
    with pytest.raises(ValueError):
        data.generate_scenes(10, split="compositional", hold_out=False)


def test_single_object_scenes_are_class_balanced():
    for split, hold_out, n_classes in (
        ("train", True, 12),
        ("test", False, 15),
        ("compositional", True, 3),
    ):
        scenes = data.generate_single_object_scenes(
            n_classes * 20 + 5, split=split, hold_out=hold_out
        )
        assert all(len(s) == 1 for s in scenes)
        counts = Counter(s.objects[0].label for s in scenes)
        assert len(counts) == n_classes
        assert max(counts.values()) - min(counts.values()) <= 1
    comp = data.generate_single_object_scenes(30, split="compositional")
    assert {(s.objects[0].colour, s.objects[0].shape) for s in comp} == set(COMPOSITIONAL_PAIRS)


def test_bad_arguments_raise_value_error():
    bad_calls = [
        lambda: data.generate_scenes(5, split="validation"),
        lambda: data.generate_scenes(5, num_objects=(0, 2)),
        lambda: data.generate_scenes(5, num_objects=5),
        lambda: data.generate_scenes(5, sizes=("huge",)),
        lambda: data.generate_scenes(-1),
        lambda: data.render_scenes(data.generate_scenes(2), image_size=8),
        lambda: data.class_index("pink", "circle"),
        lambda: data.class_name(15),
        lambda: data.relation_holds(*data.generate_scenes(1, num_objects=2)[0].objects, "near"),
        lambda: data.make_question(data.generate_scenes(1)[0], "why", np.random.default_rng()),
        lambda: data.answer_index("maybe"),
        lambda: data.images_to_tensor(np.zeros((2, 8, 8, 3), dtype=np.float32)),
        lambda: data.ShapesClassification(split="val", size=10),
        lambda: data.ShapesVQA(size=10, num_objects=1),  # no relation question possible
        lambda: ShapeObject("hexagon", "red", "small", 0.5, 0.5, 0.1),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError):
            call()


# ---------------------------------------------------------------------- rendering


@pytest.mark.parametrize("image_size", [16, 32, 64])
def test_render_shape_dtype_determinism(scenes, image_size):
    images = data.render_scenes(scenes[:20], image_size)
    assert images.shape == (20, image_size, image_size, 3) and images.dtype == np.uint8
    assert np.array_equal(data.render_scene(scenes[7], image_size), images[7])
    assert np.array_equal(data.render_scenes(scenes[:20], image_size), images)
    assert images.max() > 150  # bright objects
    assert np.median(images) < 40  # on a dark background


def single(shape, x=0.5, y=0.5, radius=0.3, colour="red"):
    return Scene((ShapeObject(shape, colour, "large", x, y, radius),))


def coverage_image(scene, image_size=64):
    """Per-pixel coverage in [0, 1] from a noise-free, jitter-free red-channel image."""
    image = data.render_scene(scene, image_size, noise=0, colour_jitter=0).astype(float)
    background = data.render_scene(Scene(()), image_size, noise=0)[0, 0].astype(float)
    colour = np.round(np.array(COLOUR_RGB[scene.objects[0].colour]) * 255)
    return (image[..., 0] - background[0]) / (colour[0] - background[0])


def test_render_areas_and_colours():
    r_px = 0.3 * 64
    areas = {s: coverage_image(single(s)).sum() / r_px**2 for s in SHAPES}
    assert areas["circle"] > areas["square"] > areas["triangle"]
    expected = {"circle": np.pi, "square": 2.0, "triangle": 3 * np.sqrt(3) / 4}
    for shape in SHAPES:
        assert areas[shape] == pytest.approx(expected[shape], rel=0.03)
    for colour in COLOURS:
        image = data.render_scene(single("circle", colour=colour), 32, noise=0, colour_jitter=0)
        assert np.abs(image[16, 16] - np.array(COLOUR_RGB[colour]) * 255).max() <= 1


def test_render_anti_aliases_edges_and_places_objects():
    cov = coverage_image(single("circle", x=0.25, y=0.75, radius=0.15))
    partial = (cov > 0.05) & (cov < 0.95)
    assert partial.sum() > 20  # a soft rim, not a hard binary edge
    rows, cols = np.nonzero(cov > 0.5)
    assert cols.mean() == pytest.approx(0.25 * 64, abs=0.5)  # x is the column
    assert rows.mean() == pytest.approx(0.75 * 64, abs=0.5)  # y is the row, downwards
    tri = coverage_image(single("triangle"))
    rows = np.nonzero(tri.sum(axis=1) > 0.5)[0]
    apex, base = 32 - rows.min(), rows.max() + 1 - 32  # pixels from the centre
    assert apex == pytest.approx(0.3 * 64, abs=1) and base == pytest.approx(0.15 * 64, abs=1)
    assert tri.sum(axis=1).argmax() >= 32  # the triangle points upwards: widest at the bottom
    square = coverage_image(single("square"))
    assert np.allclose(square, square.T, atol=1e-2)  # axis-aligned


def test_render_noise_is_faint_and_deterministic(scenes):
    noisy = data.render_scene(scenes[0]).astype(float)
    clean = data.render_scene(scenes[0], noise=0, colour_jitter=0).astype(float)
    assert 0.5 < np.abs(noisy - clean).mean() < 10
    assert np.array_equal(data.render_scene(scenes[0]), data.render_scene(scenes[0]))


# ------------------------------------------------------------------------ captions


def test_every_caption_is_true_and_complete(scenes, captions):
    for scene, caption in zip(scenes, captions, strict=True):
        assert caption_errors(caption, scene) == [], (caption, scene)


def test_caption_checker_rejects_false_captions(scenes):
    """The oracle above must be able to fail: wrong colours, counts, relations, omissions."""
    two = next(s for s in scenes if len(s) == 2 and s.objects[0].name != s.objects[1].name)
    a, b = two.objects
    wrong_colour = COLOURS[(COLOURS.index(a.colour) + 1) % 5]
    left = "left of" if a.x < b.x else "right of"
    false = [
        f"a {a.colour} {a.shape}",  # misses b
        f"a {wrong_colour} {a.shape} and a {b.colour} {b.shape}",
        f"two {a.colour} {a.shape}s and a {b.colour} {b.shape}",
        f"a {'large' if a.size == 'small' else 'small'} {a.name} and a {b.name}",
        f"a {a.name} {'right of' if left == 'left of' else 'left of'} a {b.name}",
        f"there are a {a.name} and a {b.name}",
        f"a {a.name} and a {b.name}.",
    ]
    for caption in false:
        assert caption_errors(caption, two), caption
    assert caption_errors(f"a {a.name} and a {b.name}", two) == []


def test_left_to_right_captions_are_the_same_captions_in_the_order_of_the_objects(scenes,
                                                                                 captions):
    ordered = data.caption_scenes(scenes, seed=0, order="left to right")
    assert ordered != captions  # the order changed somewhere ...
    reordered = 0
    for scene, caption, same in zip(scenes, captions, ordered, strict=True):
        assert caption_errors(same, scene) == [], (same, scene)
        frame, body = split_frame(caption)  # ... and nothing else did ("is" may be "are")
        same_frame, same_body = split_frame(same)
        phrases, same_phrases = body.split(" and "), same_body.split(" and ")
        assert same_frame.replace("are", "is") == frame.replace("are", "is")
        assert sorted(same_phrases) == sorted(phrases)
        reordered += same_phrases != phrases
        parse = data.parse_caption(same)
        if parse.relation is None and all(c.count == 1 for c in parse.claims):
            xs = [next(o.x for o in scene.objects if (o.colour, o.shape) == (c.colour, c.shape)
                       and c.size in (None, o.size)) for c in parse.claims]
            assert xs == sorted(xs), (same, scene)
    assert reordered > 0.1 * len(scenes)
    with pytest.raises(ValueError, match="order must be"):
        data.caption_scenes(scenes[:1], order="alphabetical")


def test_captions_are_varied(scenes, captions):
    frames = Counter(split_frame(c)[0] for c in captions)
    assert len(frames) >= 8  # bare, 5 prefixes, there is/are, on a dark background
    assert len(set(captions)) > 0.8 * len(captions)
    relation = [c for c in captions if re.search(REL, c)]
    counted = [c for c in captions if re.search(r"\b(two|three|four) ", c)]
    sized = [c for c in captions if re.search(SZ, c)]
    assert len(relation) > 0.05 * len(captions) and counted and sized


def test_prompts_and_class_prompts():
    assert len(PROMPT_TEMPLATES) >= 5
    prompts = data.class_prompts("red circle")
    assert prompts[0] == "a red circle" and "a photo of a red circle" in prompts
    circle = Scene((ShapeObject("circle", "red", "small", 0.5, 0.5, 0.1),))
    for prompt in prompts:
        assert caption_errors(prompt, circle) == [], prompt


# ------------------------------------------------------------------------ questions


def test_every_answer_is_recomputed_from_the_scene(vqa):
    assert len(vqa) == N_SCENES
    for scene, question, answer, qtype in zip(
        vqa.scenes, vqa.questions, vqa.answers.tolist(), vqa.question_types, strict=True
    ):
        assert recompute_answer(question, scene) == (qtype, ANSWERS[answer]), question


def test_questions_are_balanced(vqa):
    types = Counter(vqa.question_types)
    assert set(types) == set(QUESTION_TYPES) and len(set(types.values())) == 1
    by_type = {t: [] for t in QUESTION_TYPES}
    for answer, qtype in zip(vqa.answers.tolist(), vqa.question_types, strict=True):
        by_type[qtype].append(ANSWERS[answer])
    for qtype in ("exists", "relation"):
        assert set(by_type[qtype]) == {"yes", "no"}
        assert 0.4 <= by_type[qtype].count("yes") / len(by_type[qtype]) <= 0.6
    assert set(by_type["count"]) == {"zero", "one", "two", "three", "four"}
    assert set(by_type["colour"]) == set(COLOURS)
    assert set(by_type["shape"]) == set(SHAPES)


def test_named_objects_are_the_questions_objects_in_order(vqa):
    for scene, question, qtype, objects in zip(
        vqa.scenes, vqa.questions, vqa.question_types, vqa.named_objects, strict=True
    ):
        assert all(any(o is p for p in scene.objects) for o in objects), question
        if qtype == "relation":  # "is the <a> <relation> the <b>"
            a, b = objects
            assert question.startswith(f"is the {a.name} ") and question.endswith(f" the {b.name}")
        elif qtype in ("colour", "shape"):  # the one object the reference picks out
            (obj,) = objects
            known = obj.shape if qtype == "colour" else obj.colour
            assert known in question.split() and getattr(obj, qtype) not in question.split()
        else:
            assert objects == (), question


def test_answers_list_and_index():
    assert ANSWERS[:2] == ("no", "yes")
    assert ANSWERS[2:7] == ("zero", "one", "two", "three", "four")
    assert len(ANSWERS) == len(set(ANSWERS)) == 15
    assert all(data.answer_index(a) == i for i, a in enumerate(ANSWERS))


def test_train_questions_never_name_held_out_pairs(vqa):
    for question in vqa.questions:
        assert not any(name in question for name in HELD_OUT_NAMES), question
    comp = data.ShapesVQA("compositional", size=200)
    answers = comp.answers.tolist()
    for scene, question, answer in zip(comp.scenes, comp.questions, answers, strict=True):
        assert recompute_answer(question, scene)[1] == ANSWERS[answer]


def test_make_question_returns_none_when_ambiguous():
    rng = np.random.default_rng(0)
    twins = Scene(
        (
            ShapeObject("circle", "red", "small", 0.2, 0.2, 0.1),
            ShapeObject("circle", "red", "small", 0.8, 0.8, 0.1),
        )
    )
    assert data.make_question(twins, "colour", rng) is None
    assert data.make_question(twins, "shape", rng) is None
    assert data.make_question(twins, "relation", rng) is None
    close = Scene(
        (
            ShapeObject("circle", "red", "small", 0.25, 0.5, 0.1),
            ShapeObject("square", "blue", "small", 0.25 + RELATION_MARGIN / 2, 0.8, 0.1),
        )
    )
    for _ in range(20):  # only above/below are clear here
        question = data.make_question(close, "relation", rng)
        assert "above" in question.question or "below" in question.question


# ------------------------------------------------------------------------ vocabulary


def test_vocabulary_specials_and_order():
    vocab = data.build_vocabulary()
    assert vocab.words[:5] == ["<pad>", "<start>", "<end>", "<unk>", "<mask>"]
    assert (vocab.pad_id, vocab.start_id, vocab.end_id, vocab.unk_id, vocab.mask_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert tuple(vocab.special_ids) == (0, 1, 2, 3, 4)
    assert vocab.words[5:] == sorted(vocab.words[5:])
    assert len(vocab) == len(vocab.words) == len(set(vocab.words))
    assert "circle" in vocab and "hexagon" not in vocab
    assert vocab["hexagon"] == vocab.unk_id
    assert vocab.word(vocab["circle"]) == "circle"


def test_vocabulary_covers_every_generated_word(scenes, captions, vqa):
    vocab = data.build_vocabulary()
    texts = captions + vqa.questions + list(ANSWERS)
    texts += [p.format(c) for p in PROMPT_TEMPLATES for c in CLASSES]
    texts += data.caption_scenes(data.generate_scenes(1000, split="compositional"), seed=2)
    words = {w for t in texts for w in t.split()}
    assert words - set(vocab.words) == set()
    assert vocab.unk_id not in vocab.encode(" ".join(sorted(words)))
    # and nothing in the vocabulary is dead weight
    assert set(vocab.words[5:]) - words == set()


def test_encode_decode_round_trip(captions):
    vocab = data.build_vocabulary()
    for caption in captions[:200]:
        ids = vocab.encode(caption)
        assert len(ids) == len(caption.split()) and min(ids) >= 5
        assert vocab.decode(ids) == caption
        framed = [vocab.start_id, *ids, vocab.end_id, vocab.pad_id, vocab.pad_id]
        assert vocab.decode(framed) == caption
        assert vocab.decode(torch.tensor(framed)) == caption
    assert vocab.decode([vocab.start_id, vocab["red"]], skip_special=False) == "<start> red"
    assert vocab.encode("a hexagon") == [vocab["a"], vocab.unk_id]


# ------------------------------------------------------------------------ datasets


def test_classification_dataset():
    ds = data.ShapesClassification("train", size=240, seed=1, image_size=16)
    assert ds.images.shape == (240, 3, 16, 16) and ds.images.dtype == torch.float32
    assert ds.labels.shape == (240,) and ds.labels.dtype == torch.long
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds.classes == CLASSES
    counts = Counter(ds.labels.tolist())
    assert len(counts) == 12 and set(counts.values()) == {20}
    assert not {data.class_index(c, s) for c, s in COMPOSITIONAL_PAIRS} & set(counts)
    assert [s.objects[0].label for s in ds.scenes] == ds.labels.tolist()
    image, label = ds[3]
    assert image.shape == (3, 16, 16) and label == ds.labels[3]
    full = data.ShapesClassification("test", size=150, hold_out=False)
    assert set(Counter(full.labels.tolist()).values()) == {10}
    expected = data.images_to_tensor(data.render_scenes(full.scenes, 32))
    assert torch.equal(full.images, expected)


def test_captions_dataset():
    ds = data.ShapesCaptions("test", size=200, seed=2)
    assert ds.images.shape == (200, 3, 32, 32) and len(ds.captions) == 200
    for scene, caption, label in zip(ds.scenes, ds.captions, ds.labels.tolist(), strict=True):
        assert caption_errors(caption, scene) == []
        assert label == (scene.objects[0].label if len(scene) == 1 else -1)
    image, caption = ds[5]
    assert torch.equal(image, ds.images[5]) and caption == ds.captions[5]
    one = data.ShapesCaptions(size=30, num_objects=1)
    assert (one.labels >= 0).all()


def test_images_to_tensor():
    images = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    images[1, 2, 3] = (255, 0, 51)
    x = data.images_to_tensor(images)
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    assert x[1, :, 2, 3].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert x.sum().item() == pytest.approx(1.2)


def test_sample_photo():
    photo = data.load_sample_photo()
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
    assert photo.shape[:2] == (600, 512)
    assert photo.std() > 20
