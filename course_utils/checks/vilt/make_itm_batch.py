"""The check of ``make_itm_batch``: image-text-matching pairs, half of them mismatched with
another item's image, judged from many seeded draws (``StochasticCheck``)."""

from __future__ import annotations

import torch

from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.compare import describe
from course_utils.checks.stochastic import (
    StochasticCheck,
    frequency_problem,
    structure_difference,
)
from course_utils.checks.vilt._draws import run_draws, same

ITM_DRAWS = 60


def reference_make_itm_batch(images: torch.Tensor, tokens: torch.Tensor,
                             generator: torch.Generator | None = None):
    if images.ndim != 4 or tokens.ndim != 2 or len(images) != len(tokens):
        raise ValueError("expected images (B, C, H, W) and tokens (B, L) of one batch")
    batch = len(images)
    if batch < 2:
        raise ValueError("a mismatched pair needs a batch of at least 2")
    device = images.device
    mismatch = torch.rand(batch, generator=generator, device=device) < 0.5
    shift = torch.randint(1, batch, (batch,), generator=generator, device=device)
    index = torch.arange(batch, device=device)
    other = torch.where(mismatch, (index + shift) % batch, index)
    return images[other], tokens, (~mismatch).long()


ITM_INVERTED_HINT = ("the ITM labels are inverted: 1 means the pair matches (the text is the "
                     "image's own), 0 that it was mismatched.")
TRUE_PAIR_HINT = ("a pair labelled mismatched is the true pair: draw the other index among the "
                  "B − 1 others, e.g. (i + randint(1, B)) % B; a random permutation can leave "
                  "an item in place.")
ITM_GENERATOR_HINT = ("draw every random number from `generator` (torch.rand(..., "
                      "generator=generator, device=images.device)), so that a seeded "
                      "generator gives the same batch.")


def _rows(out: torch.Tensor, source: torch.Tensor) -> torch.Tensor | None:
    """For each row of ``out`` the index of the equal row of ``source`` (None if one has none)."""
    equal = (out.flatten(1)[:, None] == source.flatten(1)[None]).all(-1)  # (B_out, B)
    if not equal.any(1).all():
        return None
    return equal.float().argmax(1)


def _judge_itm(case: Case, actual: Outputs, expected: Outputs):
    images, tokens = case.inputs["images"].cpu(), case.inputs["tokens"].cpu()
    if not (same(actual["images after the call"], case.inputs["images"]) and
            same(actual["tokens after the call"], case.inputs["tokens"])):
        return "it changed the images or tokens in place", None
    stacked = [actual[f"draws[{i}]"] for i in range(3)]
    if any(s is None for s in stacked):
        return "its draws differ in type, shape or device from one call to the next", None
    draws = [(stacked[0][k].cpu(), stacked[1][k].cpu(), stacked[2][k].cpu(), f"draw {k + 1}")
             for k in range(len(stacked[0]))]
    extra = actual["no generator"]
    if not (isinstance(extra, tuple) and len(extra) == 3 and all(
            structure_difference(f"output[{i}]", extra[i], expected[f"output[{i}]"]) is None
            for i in range(3))):
        return f"with generator=None it returned {describe(extra)}", ITM_GENERATOR_HINT
    draws.append((extra[0].cpu(), extra[1].cpu(), extra[2].cpu(), "a call with generator=None"))
    mismatched = total = 0
    for out_images, out_tokens, labels, where in draws:
        image_index, token_index = _rows(out_images, images), _rows(out_tokens, tokens)
        if image_index is None or token_index is None:
            return (f"an output row is not one of the batch's images or texts ({where}); "
                    "a mismatched pair pairs the text of one item with the image of another"),\
                None
        if not ((labels == 0) | (labels == 1)).all():
            return f"labels must be 0 or 1, got {labels.unique().tolist()} ({where})", None
        true_pair = image_index == token_index
        if (labels != true_pair.long()).any():
            if (labels == 1 - true_pair.long()).all():
                return f"the labels disagree with every pair ({where})", ITM_INVERTED_HINT
            if (true_pair & (labels == 0)).any() and (labels[~true_pair] == 0).all():
                return (f"a pair labelled 0 (mismatched) is actually the true pair "
                        f"({where})"), TRUE_PAIR_HINT
            return f"the labels disagree with the pairs ({where})", None
        mismatched += int((~true_pair).sum())
        total += len(labels)
    verdict = frequency_problem("a pair was mismatched", mismatched, total, 0.5,
                                 tail=": about half the pairs must be mismatched")
    if verdict:
        return verdict
    first = tuple(actual[f"output[{i}]"] for i in range(3))
    if not all(same(actual[f"repeat[{i}]"], first[i]) for i in range(3)):
        return "two calls with generators of the same seed gave different batches", \
            ITM_GENERATOR_HINT
    if len(images) >= 8 and all(same(actual[f"other seed[{i}]"], first[i]) for i in range(3)):
        return "generators of different seeds gave the same batch", ITM_GENERATOR_HINT
    return None


def _itm_case(name: str, generator: torch.Generator, batch: int, length: int = 7,
              dtype: torch.dtype = torch.float32, size: int = 4,
              draws: int = ITM_DRAWS) -> Case:
    images = torch.rand(batch, 3, size, size, generator=generator, dtype=torch.float64)
    tokens = torch.stack([torch.randperm(50, generator=generator)[:length] + 5
                          for _ in range(batch)])  # distinct rows
    return Case(name, {"images": images.to(dtype), "tokens": tokens,
                       "seed": int(torch.randint(0, 2**31 - 1, (1,), generator=generator)),
                       "draws": draws})


def _itm_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = [
        _itm_case("batch 16 of 4×4 images and 7 tokens", generator, 16),
        _itm_case("batch 2", generator, 2, draws=200),
        _itm_case("batch 5 in float64", generator, 5, dtype=torch.float64, draws=120),
        Case("a batch of 1 (nothing to mismatch with), which it must refuse",
             {"images": torch.rand(1, 3, 4, 4, generator=generator),
              "tokens": torch.ones(1, 5, dtype=torch.long)}, raises=ValueError),
        Case("3 images but 4 texts, which it must refuse",
             {"images": torch.rand(3, 3, 4, 4, generator=generator),
              "tokens": torch.ones(4, 5, dtype=torch.long)}, raises=ValueError),
    ]
    if hidden:
        cases += [_itm_case("batch 64 of 8×8 images and 12 tokens", generator, 64, length=12,
                            size=8, draws=30),
                  _itm_case("batch 3", generator, 3, draws=150)]
    return cases


def _itm_inverted(images, tokens, generator=None):
    images, tokens, labels = reference_make_itm_batch(images, tokens, generator)
    return images, tokens, 1 - labels


def _itm_permutation(images, tokens, generator=None):
    batch = len(images)
    mismatch = torch.rand(batch, generator=generator, device=images.device) < 0.5
    perm = torch.randperm(batch, generator=generator, device=images.device)
    other = torch.where(mismatch, perm, torch.arange(batch, device=images.device))
    return images[other], tokens, (~mismatch).long()


def _itm_all_mismatched(images, tokens, generator=None):
    batch = len(images)
    shift = torch.randint(1, batch, (batch,), generator=generator, device=images.device)
    other = (torch.arange(batch, device=images.device) + shift) % batch
    return images[other], tokens, torch.zeros(batch, dtype=torch.long, device=images.device)


def _itm_ignores_generator(images, tokens, generator=None):
    return reference_make_itm_batch(images, tokens)


make_itm_batch = StochasticCheck(
    exercise="make_itm_batch",
    reference=reference_make_itm_batch,
    cases=_itm_cases,
    run=run_draws(["images", "tokens"], count=3),
    judge=_judge_itm,
    mistakes=[
        Mistake(ITM_INVERTED_HINT, _itm_inverted),
        Mistake(TRUE_PAIR_HINT, _itm_permutation),
        Mistake("about half the pairs must be mismatched", _itm_all_mismatched),
        Mistake(ITM_GENERATOR_HINT, _itm_ignores_generator),
    ],
)
