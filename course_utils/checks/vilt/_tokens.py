"""What the exercises of notebook 05 share: the course vocabulary's special token ids, token
batches as the notebook tokenizes text (``random_tokens``), and module cases whose gradients
cover every parameter (``module_case``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from course_utils.checks.case import Case
from course_utils.checks.runners import FORWARD, INIT, PARAM, random_parameters
from course_utils.data.vocab import Vocabulary

#: The special token ids of the course vocabulary: <pad>, <start>, <end>, <unk>, <mask>.
PAD, START, END, UNK, MASK = (Vocabulary.pad_id, Vocabulary.start_id, Vocabulary.end_id,
                              Vocabulary.unk_id, Vocabulary.mask_id)
SPECIALS = Vocabulary.special_ids


def random_tokens(generator: torch.Generator, batch: int, length: int, vocab_size: int,
                  lengths: Sequence[int] | None = None) -> torch.Tensor:
    """Token ids ``(batch, length)`` as the course tokenizes text: <start>, words, <end>, then
    <pad>; text ``b`` has ``lengths[b]`` tokens (random in [2, length] when not given)."""
    tokens = torch.full((batch, length), PAD, dtype=torch.long)
    for b in range(batch):
        n = lengths[b] if lengths is not None else int(
            torch.randint(2, length + 1, (1,), generator=generator))
        words = torch.randint(len(SPECIALS), vocab_size, (max(0, n - 2),), generator=generator)
        tokens[b, :n] = torch.cat([torch.tensor([START]), words, torch.tensor([END])])[:n]
    return tokens


def module_case(name: str, generator: torch.Generator, reference: type[nn.Module],
                init: dict[str, Any], forward: dict[str, Any], dtype: torch.dtype,
                raises: type[BaseException] | None = None) -> Case:
    """A case of a module exercise (``runners.run_module``): ``reference(**init)``'s parameter
    names with seeded ``random_parameters``, the ``forward`` arguments in order. Gradients are
    compared for the floating-point forward arguments and for every parameter; none on a case
    that must raise."""
    weights = random_parameters(reference(**init), generator, dtype)
    inputs = {INIT + k: v for k, v in init.items()}
    inputs.update(weights)
    inputs.update({FORWARD + k: v for k, v in forward.items()})
    grad = [k for k, v in forward.items() if torch.is_tensor(v) and v.is_floating_point()]
    grad += [k[len(PARAM):] for k in weights]
    return Case(name, inputs, grad=() if raises else grad, raises=raises)
