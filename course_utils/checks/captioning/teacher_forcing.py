"""The check of ``teacher_forcing(tokens, pad_id)``: captions ``[start, w1, …, end, pad, …]``
(B, L) -> the decoder's inputs ``tokens[:, :-1]`` and its next-token targets ``tokens[:, 1:]``
with -100 where the target is padding (the ignore index of ``F.cross_entropy``)."""

from __future__ import annotations

import torch

from course_utils.checks.captioning._shared import KeyHintCheck
from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.compare import describe
from course_utils.checks.runners import call, clone_inputs, expect_raise

IGNORE = -100
#: The key of the outputs that holds the caller's ``tokens`` after the call (unchanged).
AFTER = "tokens after the call"


def _validate(tokens: torch.Tensor) -> None:
    if tokens.ndim != 2 or tokens.shape[1] < 2:
        raise ValueError(f"expected tokens (B, L) with L >= 2, got {tuple(tokens.shape)}")


def _reference_teacher_forcing(tokens: torch.Tensor, pad_id: int):
    """inputs = tokens[:, :-1]; targets = tokens[:, 1:], -100 where the target is padding."""
    _validate(tokens)
    targets = tokens[:, 1:]
    return tokens[:, :-1].clone(), targets.masked_fill(targets == pad_id, IGNORE)


def _run_teacher_forcing(implementation, case: Case) -> Outputs:
    """Its two outputs, and the ``tokens`` it was given as they are after the call."""
    inputs = clone_inputs(case)
    if case.raises is not None:
        return expect_raise(lambda: call(implementation, case, inputs), case)
    result = call(implementation, case, inputs)
    if not isinstance(result, tuple | list):
        raise TypeError(f"teacher_forcing must return a tuple (inputs, targets); it returned "
                        f"{describe(result)}")
    outputs: Outputs = {f"output[{i}]": value for i, value in enumerate(result)}
    outputs[AFTER] = inputs["tokens"]
    return outputs


def _captions(generator: torch.Generator, lengths: list[int], width: int, pad_id: int = 0,
              vocab: int = 40) -> torch.Tensor:
    """(B, width) captions: start 1, ``lengths[b]`` words, end 2, then ``pad_id``."""
    tokens = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    for row, n in enumerate(lengths):
        words = torch.randint(5, vocab, (n,), generator=generator)
        words[words == pad_id] = 5 if pad_id != 5 else 6
        tokens[row, :n + 2] = torch.cat([torch.tensor([1]), words, torch.tensor([2])])
    return tokens


def _teacher_forcing_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator

    def case(name, lengths, width, pad_id=0, **kwargs):
        return Case(name, {"tokens": _captions(g, lengths, width, pad_id), "pad_id": pad_id},
                    **kwargs)

    cases = [
        case("3 captions of 4, 2 and 6 words, padded to L = 9", [4, 2, 6], 9),
        case("batch 1, a caption of 3 words padded to L = 8", [3], 8),
        case("2 captions that fill L = 7 exactly (no padding)", [5, 5], 7),
        Case("tokens of shape (6,) (one caption, no batch), which it must refuse",
             {"tokens": _captions(g, [3], 6)[0], "pad_id": 0}, raises=ValueError),
        Case("tokens of shape (3, 1) (L = 1: nothing to predict), which it must refuse",
             {"tokens": torch.ones(3, 1, dtype=torch.long), "pad_id": 0}, raises=ValueError),
    ]
    if hidden:
        cases[3:3] = [
            case("pad_id 7 (another vocabulary's padding), 4 captions", [1, 3, 2, 4], 8, 7),
            case("the shortest caption: start, end (L = 2)", [0, 0], 2),
            case("16 captions of 0 to 12 words, L = 15",
                 [int(n) for n in torch.randint(0, 13, (16,), generator=g)], 15),
        ]
    return cases


def _forcing(mistake: str):
    """teacher_forcing written like a student's, with one of the common mistakes."""
    def implementation(tokens, pad_id):
        _validate(tokens)
        if mistake == "in place":  # both are views of the caller's tokens
            inputs, targets = tokens[:, :-1], tokens[:, 1:]
            targets[targets == pad_id] = IGNORE  # writes into tokens, and so into inputs
            return inputs, targets
        if mistake == "ignore in inputs":
            marked = tokens.masked_fill(tokens == pad_id, IGNORE)
            return marked[:, :-1], marked[:, 1:]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        if mistake == "not shifted":
            targets = tokens[:, :-1]
        elif mistake == "wrong way":
            inputs, targets = tokens[:, 1:], tokens[:, :-1]
        if mistake != "padding kept":
            targets = targets.masked_fill(targets == pad_id, IGNORE)
        return inputs, targets

    return implementation


_IN_PLACE = ("`tokens` was changed in place: tokens[:, 1:] is a view of the caller's tensor, "
             "so writing -100 into it changes their captions too. Make the targets with "
             "masked_fill (or clone before writing).")

teacher_forcing = KeyHintCheck(
    exercise="teacher_forcing",
    reference=_reference_teacher_forcing,
    cases=_teacher_forcing_cases,
    run=_run_teacher_forcing,
    mistakes=[
        Mistake("the targets are not shifted: they are the inputs themselves, so the decoder "
                "would learn to copy the token it is given. The target at position t is the "
                "*next* token: targets = tokens[:, 1:], inputs = tokens[:, :-1].",
                _forcing("not shifted")),
        Mistake("the shift goes the wrong way: the decoder reads [start, w1, …] and predicts "
                "[w1, …, end], so inputs = tokens[:, :-1] (without the last token) and "
                "targets = tokens[:, 1:] (without the start token).", _forcing("wrong way")),
        Mistake("the padding is left in the targets: put -100 (F.cross_entropy's ignore_index) "
                "where the target is pad_id, so that the loss never asks the model to predict "
                "padding.", _forcing("padding kept")),
        Mistake("the inputs got -100 too: only the targets are marked (the inputs are token "
                "ids for the embedding table, and -100 is not one); keep the inputs as "
                "tokens[:, :-1].", _forcing("ignore in inputs")),
        Mistake(_IN_PLACE, _forcing("in place")),
    ],
    key_hints={AFTER: _IN_PLACE},
)
