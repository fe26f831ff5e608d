"""Check of ``TextTransformer(vocab_size, context_length, dim, depth, num_heads)``, against
``course_utils.blocks.TextTransformer`` given the same weights (its code refused while the
student's runs, however it was imported)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from course_utils.blocks import transformer as blocks
from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.clip._inputs import fixed_seed, random_tokens
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden
from course_utils.checks.runners import FORWARD, INIT, random_parameters, run_module
from course_utils.data import Vocabulary

#: The constructor's arguments, in order.
TEXT_SIZES = ("vocab_size", "context_length", "dim", "depth", "num_heads")


def _check_tokens(tokens: torch.Tensor, context_length: int) -> None:
    if tokens.ndim != 2 or tokens.shape[1] > context_length:
        raise ValueError(f"expected token ids (B, L) with L <= {context_length}, "
                         f"got shape {tuple(tokens.shape)}")


class ReferenceTextTransformer(blocks.TextTransformer):
    """``course_utils.blocks.TextTransformer`` with the exercise's ValueError."""

    def __init__(self, vocab_size: int, context_length: int, dim: int, depth: int,
                 num_heads: int):
        super().__init__(vocab_size, context_length, dim, depth, num_heads)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _check_tokens(tokens, self.pos_embedding.shape[1])
        return super().forward(tokens)


def _text_forward(module: nn.Module, tokens: torch.Tensor, causal: str | None = "lower",
                  readout: str = "end", norm: bool = True, positions: bool = True
                  ) -> torch.Tensor:
    """The reference forward with switches, to write the common mistakes."""
    length = tokens.shape[1]
    x = module.token_embedding(tokens)  # (B, L, D)
    if positions:
        x = x + module.pos_embedding[:, :length]
    mask = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
    mask = None if causal is None else (mask if causal == "lower" else mask.T)[None, None]
    for block in module.blocks:
        x = block(x, mask)
    if norm:
        x = module.norm(x)
    rows = torch.arange(len(tokens), device=tokens.device)
    index = {"end": (tokens != Vocabulary.pad_id).sum(dim=1) - 1,
             "last": torch.full_like(rows, length - 1), "first": torch.zeros_like(rows),
             "argmax": tokens.argmax(dim=-1)}[readout]
    return x[rows, index]  # (B, D)


class _TextTransformerVariant(nn.Module):
    """The reference's structure with its own code (the mistakes must not run the reference,
    which is refused while a student's code runs, so that they can stand in for one)."""

    def __init__(self, vocab_size: int, context_length: int, dim: int, depth: int,
                 num_heads: int, **switches):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embedding = nn.Parameter(torch.zeros(1, context_length, dim))
        self.blocks = nn.ModuleList(blocks.TransformerBlock(dim, num_heads)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.switches = switches

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _check_tokens(tokens, self.pos_embedding.shape[1])
        return _text_forward(self, tokens, **self.switches)


def _text_mistake(**switches) -> Callable:
    return functools.partial(_TextTransformerVariant, **switches)


def _run_text(implementation: Callable, case: Case) -> Outputs:
    """``run_module``, the module built under a fixed seed the notebook never sees."""
    with fixed_seed():
        return run_module(implementation, case)


def _text_case(generator: torch.Generator, name: str, vocab_size: int = 13,
               context_length: int = 8, dim: int = 16, depth: int = 2, num_heads: int = 2,
               batch: int = 3, length: int | None = None, lengths=None,
               dtype: torch.dtype = torch.float32, raises=None) -> Case:
    sizes = dict(zip(TEXT_SIZES, (vocab_size, context_length, dim, depth, num_heads),
                     strict=True))
    with fixed_seed():
        shape = ReferenceTextTransformer(**sizes)
    weights = random_parameters(shape, generator, dtype)
    tokens = random_tokens(generator, batch, length or context_length, vocab_size, lengths)
    grads = () if raises else ("token_embedding.weight", "pos_embedding",
                               "blocks.0.attn.qkv.weight", "norm.weight")
    return Case(name, {**{INIT + k: v for k, v in sizes.items()}, **weights,
                       FORWARD + "tokens": tokens}, grad=grads, raises=raises)


def _text_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = [
        _text_case(generator, "3 captions of different lengths, dim 16, 2 blocks",
                   batch=3, lengths=[8, 5, 3]),
        _text_case(generator, "batch 1, a caption that fills the context", batch=1,
                   lengths=[8]),
        _text_case(generator, "tokens shorter than context_length (L = 5 < 8)", length=5,
                   batch=4, lengths=[5, 2, 4, 3]),
        _text_case(generator, "float64, 1 block, 4 heads", dim=12, depth=1, num_heads=4,
                   batch=2, lengths=[4, 7], dtype=torch.float64),
        _text_case(generator, "tokens longer than context_length, which it must refuse",
                   length=9, raises=ValueError),
    ]
    if hidden:
        cases += [
            _text_case(generator, "5 captions, dim 24, 3 blocks, 3 heads, vocabulary 53",
                       vocab_size=53, context_length=11, dim=24, depth=3, num_heads=3,
                       batch=5),
            _text_case(generator, "only <start> and <end>", batch=2, lengths=[2, 2]),
            _text_case(generator, "float64, odd context length 7", context_length=7, dim=10,
                       num_heads=1, batch=3, dtype=torch.float64),
        ]
    return cases


TextTransformer = Check(
    exercise="TextTransformer",
    reference=ReferenceTextTransformer,
    cases=_text_cases,
    run=_run_text,
    mistakes=[
        Mistake("attention must be causal: position i may attend to positions j ≤ i only "
                "(a lower-triangular boolean mask, True on and below the diagonal, "
                "given to every block as (1, 1, L, L)).", _text_mistake(causal=None)),
        Mistake("the causal mask is transposed: True must be on and below the diagonal "
                "(torch.ones(L, L).tril()), so that no token reads the tokens after it.",
                _text_mistake(causal="upper")),
        Mistake("read the features out at the <end> token, the last non-padding token "
                "((tokens != 0).sum(1) − 1), not at the last position, which is padding for "
                "short captions.", _text_mistake(readout="last")),
        Mistake("with a causal mask the first token (<start>) has seen nothing but itself; "
                "CLIP reads the features at the <end> token, which has seen the whole caption.",
                _text_mistake(readout="first")),
        Mistake("tokens.argmax(-1) finds the end token only in OpenAI's vocabulary, where "
                "<end> has the largest id; here <end> is 2: use (tokens != 0).sum(1) − 1.",
                _text_mistake(readout="argmax")),
        Mistake("apply the final LayerNorm (self.norm) after the blocks.",
                _text_mistake(norm=False)),
        Mistake("add the position embeddings (self.pos_embedding[:, :L]) to the token "
                "embeddings: without them attention cannot tell word order.",
                _text_mistake(positions=False)),
    ],
    forbidden=Forbidden(
        code=["course_utils.blocks.transformer.TextTransformer"],
        allowed="Build it from nn.Embedding, nn.Parameter, course_utils.blocks."
                "TransformerBlock and nn.LayerNorm.",
    ),
)
