"""The check of ``caption_loss(logits, targets)``: the mean token cross-entropy over the targets
that are not -100, against ``F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1),
ignore_index=-100)``, which is refused while the student's code runs (with ``F.nll_loss`` and
their modules): the exercise is log-softmax, gather and a masked mean."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.checks.captioning._shared import randn
from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden

IGNORE = -100


def validate(logits: torch.Tensor, targets: torch.Tensor) -> None:
    """The shapes caption_loss accepts, or a ValueError saying what is wrong."""
    if logits.ndim != 3 or tuple(targets.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"expected logits (B, T, V) and targets (B, T), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")


def _reference_caption_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    validate(logits, targets)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE)


def _targets(generator, batch, tokens, vocab, lengths) -> torch.Tensor:
    """(B, T) targets in [0, V), -100 after the first ``lengths[b]`` of row b."""
    targets = torch.randint(0, vocab, (batch, tokens), generator=generator)
    ignored = torch.arange(tokens)[None, :] >= torch.tensor(lengths)[:, None]  # (B, T)
    return targets.masked_fill(ignored, IGNORE)


def _caption_loss_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator

    def case(name, batch, tokens, vocab, lengths, dtype=torch.float32, scale=1.0, **kwargs):
        logits = scale * randn(g, batch, tokens, vocab, dtype=dtype)
        return Case(name, {"logits": logits,
                           "targets": _targets(g, batch, tokens, vocab, lengths)},
                    grad=["logits"], **kwargs)

    cases = [
        case("3 captions of 6, 2 and 4 real targets out of T = 6, V = 11", 3, 6, 11, [6, 2, 4]),
        case("batch 1, T = 5 with 3 real targets, V = 7", 1, 5, 7, [3]),
        case("float64, 4 captions, every target real (no -100), V = 9", 4, 5, 9, [5] * 4,
             dtype=torch.float64),
        case("float32 logits of size ~100 (a confident model): exp overflows, softmax "
             "underflows to 0 for unlikely words; 2 captions, V = 13", 2, 6, 13, [6, 3],
             scale=100.0),
        Case("logits (2, 5, 7) but targets (2, 6), which it must refuse",
             {"logits": randn(g, 2, 5, 7), "targets": torch.zeros(2, 6, dtype=torch.long)},
             raises=ValueError),
    ]
    if hidden:
        cases[-1:-1] = [
            case("16 captions of 1 to 12 real targets, T = 12, V = 50", 16, 12, 50,
                 [int(n) for n in torch.randint(1, 13, (16,), generator=g)]),
            case("one real target in the whole batch, float64", 3, 4, 6, [1, 0, 0],
                 dtype=torch.float64),
            case("float32 logits of size ~1000, 3 captions, V = 20", 3, 5, 20, [5, 2, 4],
                 scale=1000.0),
        ]
        cases.append(Case("logits (8, 7) without a T axis and targets (8,), which it must "
                          "refuse", {"logits": randn(g, 8, 7),
                                     "targets": torch.zeros(8, dtype=torch.long)},
                          raises=ValueError))
    return cases


def _loss(mistake: str):
    """caption_loss written like a student's, with one of the common mistakes."""
    def implementation(logits, targets):
        validate(logits, targets)
        real = targets != IGNORE  # (B, T)
        if mistake == "gather -100" and not real.all():
            # what gather with a -100 index raises on the CPU (said, not done: on CUDA the
            # kernel's assertion would break the device for the rest of the session)
            raise RuntimeError(f"index {int(targets.min())} is out of bounds for dimension 2 "
                               f"with size {logits.shape[-1]}")
        index = targets.clamp(min=0)
        if mistake == "log softmax":
            log_probs = logits.softmax(dim=-1).log()
        elif mistake == "exp by hand":
            log_probs = (logits.exp() / logits.exp().sum(-1, keepdim=True)).log()
        elif mistake == "wrong dim":
            log_probs = logits.log_softmax(dim=1)
        else:
            log_probs = logits.log_softmax(dim=-1)  # (B, T, V)
        picked = log_probs.gather(-1, index[..., None])[..., 0]  # (B, T)
        losses = -picked.masked_fill(~real, 0)  # (B, T), 0 where ignored
        # (the unstable ones: "log softmax" gives inf where a real target's probability
        # underflows, "exp by hand" NaN where exp overflows; any other unstable way gives
        # one of the two, so that the hint is recognised)
        if mistake == "all positions":
            return losses.sum() / targets.numel()
        if mistake == "sum":
            return losses.sum()
        if mistake == "per caption":
            return (losses.sum(1) / real.sum(1).clamp(min=1)).mean()
        return losses.sum() / real.sum()

    return implementation


_UNSTABLE = ("the log-probabilities are not computed stably: with float32 logits ~100 apart, "
             "softmax underflows to 0 (and log 0 = -inf), and exp(logits) overflows to inf "
             "above ~88 (and inf / inf = NaN). Use logits.log_softmax(dim=-1), or "
             "logits - logits.logsumexp(-1, keepdim=True): they subtract the largest logit "
             "before exponentiating.")

caption_loss = Check(
    exercise="caption_loss",
    reference=_reference_caption_loss,
    cases=_caption_loss_cases,
    mistakes=[
        Mistake("the -100 positions are counted: the mean divides by every position, B·T, "
                "padding included. Divide the sum over the real targets by their number, "
                "(targets != -100).sum().", _loss("all positions")),
        Mistake("the loss is summed over the tokens: take the mean over the real targets "
                "(targets != -100), as F.cross_entropy does.", _loss("sum")),
        Mistake("the loss is a mean per caption, then a mean over the captions: that weighs "
                "a short caption's tokens more. Average over all the real tokens of the batch "
                "at once: sum of their losses / their number.", _loss("per caption")),
        Mistake("the softmax runs over the wrong axis: the probabilities are over the "
                "vocabulary, the last axis of logits (B, T, V): log_softmax(dim=-1).",
                _loss("wrong dim")),
        Mistake(_UNSTABLE, _loss("log softmax")),
        Mistake(_UNSTABLE, _loss("exp by hand")),
        Mistake("targets of -100 cannot index the vocabulary: gather with a safe index, "
                "targets.clamp(min=0), then zero those positions' losses with the mask "
                "targets != -100.", _loss("gather -100")),
    ],
    forbidden=Forbidden(
        functions=["torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss"],
        aten=["cross_entropy_loss", "nll_loss", "nll_loss_nd", "nll_loss_forward",
              "nll_loss2d", "nll_loss2d_forward"],
        attributes=["torch.nn.CrossEntropyLoss", "torch.nn.NLLLoss"],
        allowed="Use log_softmax (or logsumexp), gather and a masked mean.",
    ),
)
