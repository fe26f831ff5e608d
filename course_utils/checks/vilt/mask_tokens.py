"""The check of ``mask_tokens``: masked-language-model masking with plain [MASK] (no 80/10/10),
judged from many seeded draws against invariants and frequencies (``StochasticCheck``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.compare import describe
from course_utils.checks.stochastic import StochasticCheck, frequency_problem
from course_utils.checks.vilt._draws import run_draws, same
from course_utils.checks.vilt._tokens import MASK, SPECIALS, random_tokens

MASK_DRAWS = 40


def reference_mask_tokens(input_ids: torch.Tensor, mask_token_id: int, mask_prob: float,
                          special_token_ids: Sequence[int],
                          generator: torch.Generator | None = None):
    if input_ids.dtype != torch.long or input_ids.ndim != 2:
        raise ValueError("expected input_ids (B, L) of dtype long")
    if not 0 <= mask_prob <= 1:
        raise ValueError("mask_prob must lie in [0, 1]")
    special = torch.isin(input_ids, torch.tensor(list(special_token_ids),
                                                  device=input_ids.device))
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    chosen = (draw < mask_prob) & ~special
    return (input_ids.masked_fill(chosen, mask_token_id),
            torch.where(chosen, input_ids, torch.full_like(input_ids, -100)))


SPECIALS_HINT = ("special tokens (<pad>, <start>, <end>, ... : special_token_ids) are never "
                 "masked: leave them out of the draw (torch.isin(input_ids, ...)).")
LABELS_EVERYWHERE_HINT = ("labels are -100 wherever nothing was masked, so that the loss "
                          "(cross_entropy(..., ignore_index=-100)) only scores masked words.")
LABELS_INVERTED_HINT = ("the labels are inverted: the original id where a token was masked, "
                        "-100 everywhere else.")
INVERTED_PROB_HINT = ("the mask probability is inverted: a token is masked when "
                      "torch.rand(...) < mask_prob, not when it is above it.")
GENERATOR_HINT = ("draw every random number from `generator` (torch.rand(..., "
                  "generator=generator, device=input_ids.device)), so that a seeded generator "
                  "gives the same masks.")
IN_PLACE_HINT = ("do not change input_ids in place (masked_fill_, ids[...] = ...): "
                 "masked_fill (without _) or .clone() first.")
PLAIN_HINT = ("this notebook uses plain masking: every chosen token becomes mask_token_id "
              "(no random or kept tokens, unlike BERT's 80/10/10 rule).")


def _judge_mask_tokens(case: Case, actual: Outputs, expected: Outputs):
    ids = case.inputs["input_ids"].cpu()
    mask_id, p = case.inputs["mask_token_id"], case.inputs["mask_prob"]
    special = torch.isin(ids, torch.tensor(list(case.inputs["special_token_ids"])))
    if not same(actual["input_ids after the call"], case.inputs["input_ids"]):
        return "it changed input_ids in place", IN_PLACE_HINT
    masked, labels = actual["draws[0]"], actual["draws[1]"]
    if masked is None or labels is None:
        return "its draws differ in type, shape or device from one call to the next", None
    draws = [(masked.cpu(), labels.cpu(), "the draws with a seeded generator")]
    extra = actual["no generator"]
    if isinstance(extra, tuple) and len(extra) == 2 and all(type(t) is torch.Tensor and
                                                            t.shape == ids.shape for t in extra):
        draws.append((extra[0].cpu()[None], extra[1].cpu()[None], "a call with generator=None"))
    else:
        return f"with generator=None it returned {describe(extra)}", GENERATOR_HINT
    for masked, labels, where in draws:
        changed = masked != ids
        if (changed & special).any():
            return f"a special token was masked ({where})", SPECIALS_HINT
        if (changed & (masked != mask_id)).any():
            return f"a token was replaced by something other than mask_token_id ({where})", \
                PLAIN_HINT
        labelled = labels != -100
        if (labelled & ~changed).any():
            n = int((labelled & ~changed).sum())
            inverted = changed.any() and not (labelled & changed).any()
            return f"{n} labels are set at positions that were not masked ({where})", \
                LABELS_INVERTED_HINT if inverted else LABELS_EVERYWHERE_HINT
        if (changed & (labels == -100)).any():
            hint = LABELS_INVERTED_HINT if (labels[changed] == -100).all() else None
            return f"a masked position has label -100 instead of the original id ({where})", \
                hint
        if (changed & (labels != ids)).any():
            return f"a masked position's label is not the original id ({where})", None
    masked, labels = actual["draws[0]"].cpu(), actual["draws[1]"].cpu()
    maskable = int((~special).sum()) * masked.shape[0]
    hits = int((labels != -100).sum())
    verdict = frequency_problem("a non-special token was masked", hits, maskable, p,
                                 INVERTED_PROB_HINT)
    if verdict:
        return verdict
    if not (same(actual["repeat[0]"], masked[0]) and same(actual["repeat[1]"], labels[0])):
        return "two calls with generators of the same seed gave different masks", GENERATOR_HINT
    informative = int((~special).sum()) * min(p, 1 - p) >= 10  # coincidences are negligible
    if informative and same(actual["other seed[0]"], masked[0]):
        return "generators of different seeds gave the same masks", GENERATOR_HINT
    return None


def _mask_case(name: str, generator: torch.Generator, batch: int, length: int, p: float,
               vocab_size: int = 53, specials: Sequence[int] = SPECIALS, mask_id: int = MASK,
               draws: int = MASK_DRAWS) -> Case:
    ids = random_tokens(generator, batch, length, vocab_size)
    return Case(name, {"input_ids": ids, "mask_token_id": mask_id, "mask_prob": p,
                       "special_token_ids": tuple(specials),
                       "seed": int(torch.randint(0, 2**31 - 1, (1,), generator=generator)),
                       "draws": draws})


def _mask_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = [
        _mask_case("batch 32 of 12 tokens, mask_prob 0.15", generator, 32, 12, 0.15),
        _mask_case("batch 1 of 10 tokens, mask_prob 0.5", generator, 1, 10, 0.5, draws=200),
        _mask_case("batch 16 of 9 tokens, mask_prob 0.3", generator, 16, 9, 0.3),
        _mask_case("mask_prob 0: nothing is masked", generator, 8, 8, 0.0, draws=3),
        _mask_case("mask_prob 1: every word is masked", generator, 8, 8, 1.0, draws=3),
    ]
    ids = random_tokens(generator, 4, 6, 53)
    cases += [
        Case("mask_prob 1.5, which it must refuse", {
            "input_ids": ids, "mask_token_id": MASK, "mask_prob": 1.5,
            "special_token_ids": SPECIALS}, raises=ValueError),
        Case("float input_ids, which it must refuse", {
            "input_ids": ids.float(), "mask_token_id": MASK, "mask_prob": 0.15,
            "special_token_ids": SPECIALS}, raises=ValueError),
    ]
    if hidden:
        cases += [
            _mask_case("batch 64 of 25 tokens, mask_prob 0.4, other special ids", generator, 64,
                       25, 0.4, vocab_size=30, specials=(0, 1, 2, 7), mask_id=7),
            _mask_case("batch 20 of 16 tokens, mask_prob 0.1", generator, 20, 16, 0.1,
                       draws=80),
        ]
    return cases


def _mask_specials(input_ids, mask_token_id, mask_prob, special_token_ids, generator=None):
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    chosen = draw < mask_prob
    return (input_ids.masked_fill(chosen, mask_token_id),
            torch.where(chosen, input_ids, torch.full_like(input_ids, -100)))


def _labels_everywhere(input_ids, mask_token_id, mask_prob, special_token_ids, generator=None):
    masked, _ = reference_mask_tokens(input_ids, mask_token_id, mask_prob,
                                      special_token_ids, generator)
    return masked, input_ids.clone()


def _labels_inverted(input_ids, mask_token_id, mask_prob, special_token_ids, generator=None):
    masked, labels = reference_mask_tokens(input_ids, mask_token_id, mask_prob,
                                           special_token_ids, generator)
    return masked, torch.where(labels == -100, input_ids, torch.full_like(input_ids, -100))


def _probability_inverted(input_ids, mask_token_id, mask_prob, special_token_ids,
                          generator=None):
    return reference_mask_tokens(input_ids, mask_token_id, 1 - mask_prob,
                                 special_token_ids, generator)


def _ignores_generator(input_ids, mask_token_id, mask_prob, special_token_ids, generator=None):
    return reference_mask_tokens(input_ids, mask_token_id, mask_prob, special_token_ids)


def _in_place(input_ids, mask_token_id, mask_prob, special_token_ids, generator=None):
    masked, labels = reference_mask_tokens(input_ids, mask_token_id, mask_prob,
                                           special_token_ids, generator)
    return input_ids.copy_(masked), labels


def _bert_80_10_10(input_ids, mask_token_id, mask_prob, special_token_ids, generator=None):
    masked, labels = reference_mask_tokens(input_ids, mask_token_id, mask_prob,
                                           special_token_ids, generator)
    chosen = labels != -100
    u = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    random_ids = torch.randint(len(SPECIALS), 53, input_ids.shape, generator=generator,
                               device=input_ids.device)
    masked = torch.where(chosen & (u >= 0.8) & (u < 0.9), random_ids, masked)
    masked = torch.where(chosen & (u >= 0.9), input_ids, masked)
    return masked, labels


mask_tokens = StochasticCheck(
    exercise="mask_tokens",
    reference=reference_mask_tokens,
    cases=_mask_cases,
    run=run_draws(["input_ids"], count=2),
    judge=_judge_mask_tokens,
    mistakes=[
        Mistake(SPECIALS_HINT, _mask_specials),
        Mistake(LABELS_EVERYWHERE_HINT, _labels_everywhere),
        Mistake(LABELS_INVERTED_HINT, _labels_inverted),
        Mistake(INVERTED_PROB_HINT, _probability_inverted),
        Mistake(GENERATOR_HINT, _ignores_generator),
        Mistake(IN_PLACE_HINT, _in_place),
        Mistake(PLAIN_HINT, _bert_80_10_10),
    ],
)
