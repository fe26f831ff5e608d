"""Is a caption true of a scene? Parse it with the world's caption grammar, test each claim.

    parse_caption("there are two red circles and a small blue square")
    -> ParsedCaption(template="there {be} {objects}", relation=None,
                     claims=(Claim(2, None, "red", "circle"), Claim(1, "small", "blue", "square")))
    caption_truth("a red circle left of a blue square", scene)
    -> CaptionTruth(parsed=True, true=False, complete=True,
                    failures=("says red circle left of blue square: it is not",), parse=...)

Grammar: exactly that of captions.py. A CAPTION_TEMPLATES template around a list of phrases
joined by "and", or around two one-object phrases and a relation:

    phrase    "a" [size] colour shape  |  count [size] colour plural-shape  (count: two..four)
    relation  "a" [size] colour shape  relation  "a" [size] colour shape   (RELATIONS)

"there {be}" must agree with the first phrase ("is" before "a", "are" before a count); a
wrong "is"/"are" is grammar, not a claim about the scene, so such text is unparseable, as
are upper case, "one"/"zero" as counts, "a" with a plural or a count with a singular, empty
phrases ("a red circle and"), and anything but single spaces between words.

Semantics, chosen so that every caption caption_scene can produce is true and complete:

1. A list caption groups its phrases by (colour, shape). A group is named either by one
   phrase without a size, which claims the whole group ("two red circles": the scene has
   exactly two red circles, of any sizes), or by phrases with sizes, at most one per size,
   each claiming the objects of its size ("a small red circle": exactly one small red
   circle). Anything else ("a red circle and a red circle", "two red circles and a small
   red circle", the same size twice) names the group more than once and is false.
2. A relation caption is true when each phrase names the only object of its colour and
   shape in the scene (with the right size, if it names one), the two phrases name
   different objects, and relation_holds(first, second, relation) (with RELATION_MARGIN).
3. true: every claim holds (failures are only about claims). complete: nothing is left
   out: each object of the scene pairs with its own one among those the caption speaks of
   ("two red circles": two red circles of any size; "a small red circle": one small). A
   mixed-size group named in part ("a small red circle" beside a large one) is true but
   incomplete; "three red circles" for two is false but complete.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from .captions import CAPTION_TEMPLATES
from .world import COLOURS, COUNT_WORDS, RELATIONS, SHAPES, SIZES, Scene, plural, relation_holds

_SINGULAR, _PLURAL = {s: s for s in SHAPES}, {plural(s): s for s in SHAPES}
_COUNTS = {word: n for n, word in enumerate(COUNT_WORDS) if n >= 2}  # "a" says one
_NUMBER = dict(enumerate(COUNT_WORDS))  # a hand-made Scene may hold more: _NUMBER.get(n, str(n))


class Claim(NamedTuple):
    """One phrase of a caption: `count` objects of `colour` and `shape` (and `size`, or None)."""

    count: int
    size: str | None
    colour: str
    shape: str

    @property
    def text(self) -> str:
        """The phrase as the world writes it: "a small red circle", "two red circles"."""
        return _describe(self.count, self.size, self.colour, self.shape, article="a")

    @property
    def name(self) -> str:
        """The phrase without its count: "small red circle", "red circle"."""
        return " ".join(w for w in (self.size, self.colour, self.shape) if w)


@dataclass(frozen=True)
class ParsedCaption:
    """A caption within the grammar.

    template: the CAPTION_TEMPLATES entry it was written with.
    claims: its phrases in order; for a relation caption the two one-object phrases.
    relation: one of RELATIONS ("first <relation> second"), or None for a list caption.
    """

    template: str
    claims: tuple[Claim, ...]
    relation: str | None = None

    @property
    def text(self) -> str:
        """The caption rebuilt from its parts ("is"/"are" agreeing with the first phrase)."""
        if self.relation is None:
            objects = " and ".join(c.text for c in self.claims)
        else:
            objects = f"{self.claims[0].text} {self.relation} {self.claims[1].text}"
        be = "is" if self.claims[0].count == 1 else "are"
        return self.template.format(objects=objects, be=be)


@dataclass(frozen=True)
class CaptionTruth:
    """What a caption says right and wrong about a scene (see the module docstring).

    parsed: the text is within the caption grammar (if not, true and complete are False).
    true: every claim holds of the scene.
    complete: every object of the scene is mentioned, directly or through a count.
    failures: the claims that fail and the objects left out, in words, e.g.
        "says two red circles, the scene has one red circle", "does not mention the yellow
        square"; () exactly when the caption is true and complete.
    parse: the ParsedCaption, or None when the text is outside the grammar.
    """

    parsed: bool
    true: bool
    complete: bool
    failures: tuple[str, ...]
    parse: ParsedCaption | None = None


def parse_caption(text: str) -> ParsedCaption | None:
    """The claims of a caption, or None for any text outside the caption grammar.

    Never raises for a str (empty, "<unk>", stray spaces, upper case: all None); raises
    ValueError for anything else. parse_caption(t).text == t whenever the result is not None.
    """
    if not isinstance(text, str):
        raise ValueError(f"a caption must be a str, got {type(text).__name__}")
    words = text.split(" ")  # "a  red" -> ["a", "", "red"]: an empty word parses as nothing
    for template in CAPTION_TEMPLATES:
        before, after = (part.split() for part in template.split("{objects}"))
        if len(words) <= len(before) + len(after) or words[len(words) - len(after) :] != after:
            continue
        be = [w for t, w in zip(before, words, strict=False) if t == "{be}"]
        if any(t not in ("{be}", w) for t, w in zip(before, words, strict=False)):
            continue
        parsed = _parse_objects(words[len(before) : len(words) - len(after)])
        if parsed is None:
            continue
        claims, relation = parsed
        if be and be[0] != ("is" if claims[0].count == 1 else "are"):
            return None  # "there is two ...", "there are a ...": wrong agreement
        return ParsedCaption(template, claims, relation)
    return None


def _parse_objects(words: list[str]) -> tuple[tuple[Claim, ...], str | None] | None:
    """(claims, relation) of the object description, or None."""
    # 1. phrases joined by "and" (an empty phrase, from "and and" or a trailing "and", fails)
    parts: list[list[str]] = [[]]
    for word in words:
        if word == "and":
            parts.append([])
        else:
            parts[-1].append(word)
    claims = [_parse_phrase(part) for part in parts]
    if all(c is not None for c in claims):
        return tuple(claims), None
    # 2. "a ..." relation "a ..."
    for relation in RELATIONS:
        r = relation.split()
        for i in range(1, len(words) - len(r)):
            if words[i : i + len(r)] == r:
                first, second = _parse_phrase(words[:i]), _parse_phrase(words[i + len(r) :])
                if first is not None and second is not None and first.count == second.count == 1:
                    return (first, second), relation
    return None


def _parse_phrase(words: list[str]) -> Claim | None:
    """ "a [size] colour shape" or "count [size] colour shapes" -> Claim, else None."""
    if len(words) not in (3, 4):
        return None
    count_word, colour, noun = words[0], words[-2], words[-1]
    size = words[1] if len(words) == 4 else None
    count = 1 if count_word == "a" else _COUNTS.get(count_word)
    shape = (_SINGULAR if count == 1 else _PLURAL).get(noun)
    if count is None or shape is None or colour not in COLOURS or size not in (None, *SIZES):
        return None
    return Claim(count, size, colour, shape)


def caption_truth(text: str, scene: Scene) -> CaptionTruth:
    """Check a caption against a scene: is it parsed, true, complete, and what fails.

    Args:
        text: any str (text outside the grammar gives parsed=False, never an exception).
        scene: a Scene with at least one object.
    Returns:
        CaptionTruth; every caption caption_scene(scene, rng) gives is true and complete.
    Raises:
        ValueError: text is not a str, or scene is not a Scene or is empty.
    """
    if not isinstance(scene, Scene):
        raise ValueError(f"scene must be a Scene, got {type(scene).__name__}")
    if len(scene) == 0:
        raise ValueError("cannot check a caption against an empty scene")
    parse = parse_caption(text)
    if parse is None:
        return CaptionTruth(False, False, False, (f"outside the caption grammar: {text!r}",))
    # 1. the claims (module docstring, semantics 1 and 2)
    if parse.relation is None:
        failures = _repeated_groups(parse.claims)
        failures += [_claim_failure(c, scene, unique=False) for c in parse.claims]
    else:
        failures = _relation_failures(parse.claims, parse.relation, scene)
    failures = [f for f in dict.fromkeys(failures) if f]  # drop None and repeats, keep order
    # 2. the objects left out (semantics 3)
    missing = _unmentioned(parse.claims, scene)
    return CaptionTruth(True, not failures, not missing, tuple(failures + missing), parse)


def _describe(count: int, size: str | None, colour: str, shape: str, article: str = "one") -> str:
    """ "no red circle", "one small red circle" (or "a ..."), "two red circles"."""
    first = "no" if count == 0 else article if count == 1 else _NUMBER.get(count, str(count))
    noun = shape if count <= 1 else plural(shape)
    return " ".join(w for w in (first, size, colour, noun) if w)


def _repeated_groups(claims: tuple[Claim, ...]) -> list[str]:
    """A failure for each (colour, shape) named by more than one phrase without sizes, by
    a phrase with a size and one without, or by two phrases of the same size."""
    failures = []
    for colour, shape in dict.fromkeys((c.colour, c.shape) for c in claims):
        mine = [c for c in claims if (c.colour, c.shape) == (colour, shape)]
        sizes = [c.size for c in mine]
        if len(mine) > 1 and (None in sizes or len(set(sizes)) < len(sizes)):
            said = " and ".join(c.text for c in mine)
            failures.append(f"names {colour} {plural(shape)} more than once: {said}")
    return failures


def _claim_failure(claim: Claim, scene: Scene, unique: bool) -> str | None:
    """Why one phrase is false of the scene, or None.

    unique=False (list caption): the scene has exactly `count` objects of the phrase's
    colour and shape (and size, if named). unique=True (relation caption): the phrase's
    colour and shape name exactly one object, and its size, if named, is right.
    """
    group = scene.find(claim.colour, claim.shape)
    if not group:
        return f"no {claim.colour} {claim.shape} in the scene"
    if unique and len(group) != 1:
        return f"says a {claim.colour} {claim.shape}, the scene has " + _describe(
            len(group), None, claim.colour, claim.shape
        )
    found = sum(claim.size in (None, o.size) for o in group)
    if found == claim.count:
        return None
    if claim.count == 1 and len(group) == 1:  # the one object has the other size
        return f"says {claim.text}, it is {group[0].size}"
    return f"says {claim.text}, the scene has " + _describe(
        found, claim.size, claim.colour, claim.shape
    )


def _relation_failures(claims: tuple[Claim, ...], relation: str, scene: Scene) -> list[str]:
    """Failures of "first <relation> second": each referent, then the relation itself."""
    first, second = claims
    failures = [_claim_failure(c, scene, unique=True) for c in claims]
    said = f"says {first.name} {relation} {second.name}"
    if (first.colour, first.shape) == (second.colour, second.shape):
        failures.append(f"{said}: a relation needs two different objects")
        return failures
    a, b = scene.find(first.colour, first.shape), scene.find(second.colour, second.shape)
    if len(a) == len(b) == 1 and not relation_holds(a[0], b[0], relation):
        failures.append(f"{said}: it is not")
    return failures


def _unmentioned(claims: tuple[Claim, ...], scene: Scene) -> list[str]:
    """ "does not mention ..." for the objects no phrase can be paired with.

    Per (colour, shape): the phrases with a size cover up to `count` objects of that size
    each, the phrases without one cover up to `count` of the rest, whatever their size.
    """
    failures = []
    groups = Counter((o.colour, o.shape) for o in scene.objects)
    for colour, shape in groups:
        mine = [c for c in claims if (c.colour, c.shape) == (colour, shape)]
        left = {}  # size -> objects of that size no sized phrase covers
        for size in SIZES:
            said = sum(c.count for c in mine if c.size == size)
            left[size] = max(0, scene.count(colour, shape, size) - said)
        unsized = sum(c.count for c in mine if c.size is None)
        rest = sum(left.values()) - unsized
        if rest <= 0:
            continue
        total = groups[colour, shape]
        if unsized or not mine:  # "the yellow square"; which sizes are left out is unknown
            failures.append(_missing(rest, total, None, colour, shape))
        else:
            for size, n in left.items():
                if n:
                    failures.append(
                        _missing(n, scene.count(colour, shape, size), size, colour, shape)
                    )
    return failures


def _missing(n: int, total: int, size: str | None, colour: str, shape: str) -> str:
    """ "does not mention the (two) [size] red circle(s)", or "one of the three ..."."""
    said = "the" if n == total else f"{_NUMBER.get(n, str(n))} of the"
    return f"does not mention {said} " + _describe(total, size, colour, shape, article="")
