"""Check of ``count_swap(caption)``, against a word-by-word rewrite of a Shapes-world caption:
every count word moved to the next count (two -> three -> four -> two), None without one."""

from __future__ import annotations

import dataclasses

import torch

from course_utils.checks.case import Case, Mistake
from course_utils.checks.clip._inputs import seed_from
from course_utils.checks.core import Check
from course_utils.data import COUNT_WORDS, Scene, caption_scenes, generate_scenes

# --- count_swap(caption) -> the caption with its counts swapped, or None ---------------------

#: The count words of the caption grammar: a phrase of n >= 2 objects starts with one of them
#: ("two red circles"); one object is "a red circle".
SWAP_COUNTS = COUNT_WORDS[2:]  # ("two", "three", "four")


def reference_count_swap(caption: str) -> str | None:
    """Every count word of ``caption`` replaced by the next one (two -> three -> four -> two),
    every other word kept; None when the caption has no count word."""
    words = caption.split()
    if not any(word in SWAP_COUNTS for word in words):
        return None
    return " ".join(SWAP_COUNTS[(SWAP_COUNTS.index(word) + 1) % len(SWAP_COUNTS)]
                    if word in SWAP_COUNTS else word for word in words)


def _count_captions(generator: torch.Generator, n: int) -> list[str]:
    """Captions of ``n`` scenes of 2-4 objects, about half of them with a count word: in every
    second scene, the objects all share the first one's colour and shape."""
    scenes = generate_scenes(n, seed=seed_from(generator), split="train", num_objects=(2, 4))
    scenes = [Scene(tuple(dataclasses.replace(o, colour=s.objects[0].colour,
                                              shape=s.objects[0].shape) for o in s.objects))
              if i % 2 == 0 else s for i, s in enumerate(scenes)]
    return caption_scenes(scenes, seed=seed_from(generator))


def _count_swap_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(caption: str) -> Case:
        return Case(repr(caption), {"caption": caption})

    fixed = ["two red circles", "a photo of three small blue squares",
             "four large green triangles on a dark background",
             "there are two purple squares and a yellow circle",
             "a red circle and two blue triangles and a green square",
             "two red circles and two blue squares", "a photo of a small red circle",
             "a green triangle left of a large yellow square"]
    generated = _count_captions(generator, 24 if hidden else 8)
    cases = [case(c) for c in fixed + generated]
    if hidden:
        cases += [case(c) for c in ["three yellow circles and a small purple triangle",
                                    "there is a blue square and four red triangles",
                                    "an image of three green circles", ""]]
    return cases


def _count_swap_mistake(counts=SWAP_COUNTS, shift=1, every=True, none_without=True,
                        chained=False):
    def count_swap(caption):
        if chained:  # each replace undoes the one before: everything ends as "two"
            swapped = caption.replace("two", "three").replace("three", "four") \
                .replace("four", "two")
            return swapped if swapped != caption or any(
                w in SWAP_COUNTS for w in caption.split()) else None
        words, seen = caption.split(), False
        out = []
        for word in words:
            if word in counts and (every or not seen):
                out.append(counts[(counts.index(word) + shift) % len(counts)])
                seen = True
            else:
                out.append(word)
        if not seen:
            return None if none_without else caption
        return " ".join(out)

    return count_swap


count_swap = Check(
    exercise="count_swap",
    reference=reference_count_swap,
    cases=_count_swap_cases,
    mistakes=[
        Mistake("the swapped caption names the same count as the original: chained "
                "str.replace calls undo each other (two → three, then three → four, then "
                "four → two). Look each word up once, in a dict or with COUNT_WORDS.index.",
                _count_swap_mistake(chained=True)),
        Mistake("a count word must stay a plural count, so that the noun still agrees with it: "
                "four wraps round to two, never to \"one\" or \"zero\" (\"one red circles\" "
                "is no caption of this world; one object is \"a red circle\").",
                _count_swap_mistake(counts=COUNT_WORDS[1:])),
        Mistake("a count word must stay a plural count, so that the noun still agrees with it: "
                "four wraps round to two, never to \"one\" or \"zero\" (\"one red circles\" "
                "is no caption of this world; one object is \"a red circle\").",
                _count_swap_mistake(counts=COUNT_WORDS)),
        Mistake("only the count words change: \"a\" is not one of them (\"a photo of\", "
                "\"a red circle\" stay as they are), since \"two red circle\" would break the "
                "plural and \"two photo of\" the sentence. The count words are two, three and "
                "four.",
                _count_swap_mistake(counts=("a", *SWAP_COUNTS))),
        Mistake("swap every count word of the caption, not only the first (\"two red circles "
                "and two blue squares\" -> \"three red circles and three blue squares\").",
                _count_swap_mistake(every=False)),
        Mistake("move each count to the next one, two → three → four → two (this went the "
                "other way round).", _count_swap_mistake(shift=-1)),
        Mistake("a caption without a count word has no count-swapped version: return None, "
                "not the caption unchanged (it would be a \"negative\" identical to the "
                "positive).", _count_swap_mistake(none_without=False)),
    ],
)
