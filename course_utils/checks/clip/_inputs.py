"""What several checks of notebook 04 share: seeds drawn from a case generator, well-formed token
ids, a case's weights, and a fixed seed that leaves the notebook's random state alone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from course_utils.checks.runners import PARAM
from course_utils.data.vocab import SPECIAL_TOKENS, Vocabulary

#: The id of the first ordinary word: every Vocabulary gives its special tokens the first ids.
FIRST_WORD_ID = len(SPECIAL_TOKENS)


def seed_from(generator: torch.Generator) -> int:
    """A seed for the data generators (scenes, captions), drawn from the case generator."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


@contextlib.contextmanager
def fixed_seed() -> Iterator[None]:
    """Seed 0 inside, the notebook's CPU random state restored after: building a module in a
    check neither depends on nor disturbs the notebook's random numbers."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def random_tokens(generator: torch.Generator, batch: int, length: int, vocab_size: int,
                  lengths: Sequence[int] | None = None) -> torch.Tensor:
    """Well-formed token ids ``(batch, length)``: <start>, words, <end>, then <pad>.

    ``lengths`` (start and end included) default to random values in [2, length].
    """
    if lengths is None:
        lengths = torch.randint(2, length + 1, (batch,), generator=generator).tolist()
    tokens = torch.full((batch, length), Vocabulary.pad_id, dtype=torch.long)
    for row, n in enumerate(lengths):
        tokens[row, 0] = Vocabulary.start_id
        tokens[row, 1:n - 1] = torch.randint(FIRST_WORD_ID, vocab_size, (n - 2,),
                                             generator=generator)
        tokens[row, n - 1] = Vocabulary.end_id
    return tokens


def parameters_of(inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights among a case's inputs, by parameter name (``param:NAME`` -> ``NAME``)."""
    return {k[len(PARAM):]: v for k, v in inputs.items() if k.startswith(PARAM)}
