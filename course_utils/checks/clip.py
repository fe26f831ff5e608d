"""Checks of notebook 04_mini_clip: a mini CLIP (Radford et al. 2021), graded against open_clip.

Exercises and references:

- ``tokenize(captions, vocab, context_length)``: a word-level version of open_clip's
  ``SimpleTokenizer.__call__`` (start token, ids, end token, zero padding, truncation that
  keeps the end token), written out here.
- ``TextTransformer(vocab_size, context_length, dim, depth, num_heads)``:
  ``course_utils.blocks.TextTransformer`` given the same weights (its code is refused while
  the student's runs, however it was imported).
- ``MiniCLIP(image_encoder, text_encoder, image_width, text_width, embed_dim)``: a reference
  written after open_clip's ``CLIP`` (``encode_image``/``encode_text`` with ``normalize``,
  ``logit_scale`` = ln(1/0.07), ``forward`` -> features and ``logit_scale.exp()``).
- ``build_zero_shot_classifier(model, classnames, templates, tokenizer)``:
  ``open_clip.zero_shot_classifier.build_zero_shot_classifier`` (its code refused while the
  student's runs) with the same model, tokenizer, class names and templates.
- ``recall_at_k(image_features, text_features, k)``: a brute-force count, pair by pair.
- ``count_swap(caption)``: a word-by-word rewrite of a Shapes-world caption, every count word
  moved to the next count (two -> three -> four -> two), None for a caption without one.
- ``zero_shot_quality(model)`` and ``retrieval_quality(model)``: graded thresholds on the
  trained model, measured on held-out Shapes-world data the checks generate themselves.

Every case is data (tensors, numbers, strings, lists of strings): a ``run`` builds the
modules from the case's sizes and weights (``param:<name>`` entries), so that the student's
step can run in another process. The common mistakes are written with their own code, never
the reference's (which is refused while a student's code runs), so that tests can hand them
to a check as if a student had written them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.blocks import transformer as blocks
from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.compare import describe
from course_utils.checks.core import Check, QualityCheck
from course_utils.checks.forbid import Forbidden
from course_utils.checks.runners import upstream_gradient
from course_utils.data import (
    CLASSES,
    COUNT_WORDS,
    PROMPT_TEMPLATES,
    Scene,
    ShapesCaptions,
    ShapesClassification,
    Vocabulary,
    build_vocabulary,
    caption_scenes,
    class_prompts,
    generate_scenes,
)
from course_utils.data import vocab as vocabulary

#: ln(1/0.07): CLIP's initial logit scale (Radford et al. 2021, §2.5; Wu et al. 2018).
INIT_LOGIT_SCALE = math.log(1 / 0.07)
#: CLIP clips the logit scale at 100 (Radford et al. 2021, §2.5).
MAX_LOGIT_SCALE = math.log(100)

PAD, START, END = 0, 1, 2  # ids of <pad>, <start>, <end> in every Vocabulary


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _call_or_raise(fn: Callable[[], Outputs], case: Case) -> Outputs:
    """Outputs of ``fn()``, or ``{"raised": ...}`` for a case that must raise."""
    if case.raises is None:
        return fn()
    try:
        fn()
    except case.raises as error:
        return {"raised": type(error).__name__}
    return {"raised": None}


# --- shared: loading a case's weights into a module -----------------------------------------

PARAM = "param:"


def _params(case: Case, prefix: str = "") -> dict[str, torch.Tensor]:
    """The weights a case carries, ``{"blocks.0.attn.qkv.weight": tensor, ...}``."""
    start = PARAM + prefix
    return {k[len(start):]: v for k, v in case.inputs.items() if k.startswith(start)}


def _random_weights(module: nn.Module, generator: torch.Generator,
                    dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random weights for every parameter of ``module``, scaled so that activations stay
    O(1) and no parameter is negligible (a forgotten LayerNorm or position embedding shows)."""
    weights = {}
    for name, parameter in module.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
        if name == "logit_scale":
            value = 2 + 2 * torch.rand((), generator=generator, dtype=torch.float64)
        elif "norm" in name and name.endswith("weight"):
            value = 1 + 0.3 * noise  # LayerNorm gains
        elif name.endswith("bias"):
            value = 0.3 * noise
        elif name.endswith("projection"):  # (width, embed_dim)
            value = noise / math.sqrt(parameter.shape[0])
        elif parameter.ndim == 2 and "embedding" not in name:  # nn.Linear (out, in)
            value = noise / math.sqrt(parameter.shape[1])
        elif parameter.ndim == 4:  # the patch embedding's convolution
            value = noise / math.sqrt(parameter[0].numel())
        else:  # token, position and [CLS] embeddings
            value = noise * 0.7
        weights[name] = value.to(dtype)
    return weights


def _load(module: nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    """Copy ``weights`` into ``module``'s parameters, by name; a clear error if they differ."""
    own = dict(module.named_parameters())
    missing = sorted(set(weights) - set(own))
    unexpected = sorted(set(own) - set(weights))
    if missing or unexpected:
        raise AttributeError(
            f"{what}'s parameters are not named as the exercise asks: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    with torch.no_grad():
        for name, value in weights.items():
            if own[name].shape != value.shape:
                raise ValueError(f"{what}.{name} has shape {tuple(own[name].shape)}, "
                                 f"expected {tuple(value.shape)}")
            own[name].copy_(value)


def _backward(outputs: Outputs, parameters: dict[str, torch.Tensor], names: Sequence[str],
              device: torch.device) -> Outputs:
    """Backpropagate fixed upstream gradients through the tensor outputs; the gradients of
    the named parameters (None where none arrived). Outputs on another device than the case's
    are left out: the comparison rejects them."""
    terms = [(value * upstream_gradient(key, value)).sum() for key, value in outputs.items()
             if type(value) is torch.Tensor and value.is_floating_point() and value.requires_grad
             and value.device == device]
    grads: Outputs = {}
    if terms:
        torch.stack(terms).sum().backward()
    for name in names:
        grads[f"grad[{name}]"] = parameters[name].grad if name in parameters else None
    return grads


def _tokens(generator: torch.Generator, batch: int, length: int, vocab_size: int,
            lengths: Sequence[int] | None = None) -> torch.Tensor:
    """Well-formed token ids ``(batch, length)``: <start>, words, <end>, then padding 0.

    ``lengths`` (start and end included) default to random values in [2, length].
    """
    if lengths is None:
        lengths = torch.randint(2, length + 1, (batch,), generator=generator).tolist()
    tokens = torch.zeros(batch, length, dtype=torch.long)
    for row, n in enumerate(lengths):
        tokens[row, 0] = START
        tokens[row, 1:n - 1] = torch.randint(5, vocab_size, (n - 2,), generator=generator)
        tokens[row, n - 1] = END
    return tokens


# --- tokenize(captions, vocab, context_length) -> (N, context_length) long ------------------


def reference_tokenize(captions: str | Sequence[str], vocab: Vocabulary,
                       context_length: int) -> torch.Tensor:
    """Word-level tokenisation as open_clip's ``SimpleTokenizer.__call__`` does it with BPE:
    ``[<start>] + ids + [<end>]``, cut to ``context_length`` keeping ``<end>`` last, padded
    with 0."""
    if isinstance(captions, str):
        captions = [captions]
    if int(context_length) != context_length or context_length < 2:
        raise ValueError(f"context_length must be an integer of at least 2, got {context_length}")
    tokens = torch.zeros(len(captions), context_length, dtype=torch.long)
    for row, caption in enumerate(captions):
        ids = [vocab.start_id] + vocab.encode(caption) + [vocab.end_id]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = vocab.end_id  # open_clip: tokens[-1] = eot_token_id
        tokens[row, :len(ids)] = torch.tensor(ids)
    return tokens


class _EndsLast(Vocabulary):
    """A vocabulary whose <start> and <end> have the two largest ids, as open_clip's BPE
    vocabulary does (<end_of_text> = 49407): code with the course's ids (1, 2) written into it
    fails here, code that reads vocab.start_id and vocab.end_id does not. <pad> stays 0."""

    def __init__(self, words) -> None:
        super().__init__(words)
        start, end = vocabulary.START, vocabulary.END
        self._words = [w for w in self._words if w not in (start, end)] + [start, end]
        self._ids = {word: i for i, word in enumerate(self._words)}
        self.start_id, self.end_id = self._ids[start], self._ids[end]
        self.unk_id, self.mask_id = self._ids[vocabulary.UNK], self._ids[vocabulary.MASK]
        self.special_ids = (self.pad_id, self.start_id, self.end_id, self.unk_id, self.mask_id)


def _run_tokenize(implementation: Callable, case: Case) -> Outputs:
    kind = _EndsLast if case.inputs.get("specials") == "last" else Vocabulary
    vocab = kind(case.inputs["words"])
    captions = case.inputs["captions"]
    captions = captions if isinstance(captions, str) else list(captions)
    return _call_or_raise(
        lambda: {"output": implementation(captions, vocab, case.inputs["context_length"])}, case)


def _tokenize_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    words = [w for w in build_vocabulary().words if not w.startswith("<")]
    scenes = generate_scenes(12, seed=_seed(generator), split="train")
    captions = caption_scenes(scenes, seed=_seed(generator))

    def case(name, captions, context_length, words=words, raises=None, specials="first"):
        return Case(name, {"captions": captions, "words": list(words),
                           "context_length": context_length, "specials": specials},
                    raises=raises)

    longest = max(len(c.split()) for c in captions[:3])
    cases = [
        case("3 captions, context_length 25 (padding)", captions[:3], 25),
        case("one caption that fills the context exactly (no padding, no cut)",
             [captions[3]], len(captions[3].split()) + 2),
        case("captions longer than context_length 6: cut, keeping <end>", captions[4:7], 6),
        case("a word outside the vocabulary (-> <unk>)", ["a zebra circle", "a red circle"], 8),
        case("a single string, not a list: one row", "a small red circle", 7),
        case("another vocabulary, whose <start> and <end> have the largest ids (as in "
             "open_clip's)", captions[7:9], 20, specials="last"),
        case("context_length 1, which it must refuse", captions[:2], 1, raises=ValueError),
    ]
    if hidden:
        extra = sorted(set(words) | {"aardvark", "big", "zebra"})  # every id moves
        cases += [
            case("another vocabulary (ids differ from build_vocabulary)", captions[7:10], 20,
                 words=extra),
            case("context_length 2: only <start> and <end> fit", captions[10:12], 2),
            case("an empty caption and extra spaces", ["", "  a   red  circle "], 6),
            case(f"a batch cut one word short (context_length {longest + 1})", captions[:3],
                 longest + 1),
            case("context_length 0, which it must refuse", captions[:1], 0, raises=ValueError),
        ]
    return cases


def _tokenize_mistake(cut_keeps_end=True, start=True, end=True, pad=PAD, dtype=torch.long,
                      fixed_ids=False):
    def tokenize(captions, vocab, context_length):
        # fixed_ids: the course vocabulary's <start> and <end>, written into the code
        start_id, end_id = (START, END) if fixed_ids else (vocab.start_id, vocab.end_id)
        if isinstance(captions, str):
            captions = [captions]
        tokens = torch.full((len(captions), context_length), pad, dtype=torch.long)
        for row, caption in enumerate(captions):
            words = vocab.encode(caption)
            if cut_keeps_end:
                words = words[:max(0, context_length - int(start) - int(end))]
            ids = ([start_id] if start else []) + words + ([end_id] if end else [])
            ids = ids[:context_length]
            tokens[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return tokens.to(dtype)

    return tokenize


tokenize = Check(
    exercise="tokenize",
    reference=reference_tokenize,
    cases=_tokenize_cases,
    run=_run_tokenize,
    mistakes=[
        Mistake("a caption that is too long lost its <end> token: cut the words to "
                "context_length − 2, then add <end> (open_clip sets tokens[-1] = eot), so "
                "that the text encoder still finds the end token.",
                _tokenize_mistake(cut_keeps_end=False)),
        Mistake("every row starts with <start> (vocab.start_id): [<start>] + word ids + [<end>].",
                _tokenize_mistake(start=False)),
        Mistake("every row needs an <end> token (vocab.end_id) after the words: the text "
                "encoder reads its features there.", _tokenize_mistake(end=False)),
        Mistake("pad with 0 (<pad>, vocab.pad_id), not with the end token.",
                _tokenize_mistake(pad=END)),
        Mistake("take <start> and <end> from the vocabulary (vocab.start_id, vocab.end_id), "
                "not as fixed numbers: another vocabulary puts them elsewhere.",
                _tokenize_mistake(fixed_ids=True)),
        Mistake("token ids index an embedding table: return a long (int64) tensor.",
                _tokenize_mistake(dtype=torch.float32)),
        Mistake("token ids index an embedding table: return a long (int64) tensor, not int32.",
                _tokenize_mistake(dtype=torch.int32)),
    ],
)


# --- TextTransformer(vocab_size, context_length, dim, depth, num_heads) ---------------------

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
    index = {"end": (tokens != 0).sum(dim=1) - 1, "last": torch.full_like(rows, length - 1),
             "first": torch.zeros_like(rows), "argmax": tokens.argmax(dim=-1)}[readout]
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


def _make(implementation: Callable, *args) -> nn.Module:
    """Build a module without disturbing the notebook's random number generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return implementation(*args)


def _run_text(implementation: Callable, case: Case) -> Outputs:
    tokens = case.inputs["tokens"]
    weights = _params(case)
    dtype = next(iter(weights.values())).dtype
    module = _make(implementation, *(case.inputs[k] for k in TEXT_SIZES))
    if not isinstance(module, nn.Module):
        raise TypeError(f"TextTransformer(...) should make an nn.Module, got "
                        f"{type(module).__name__}")
    module.to(device=tokens.device, dtype=dtype)
    _load(module, weights, "TextTransformer")
    if case.raises is not None:
        return _call_or_raise(lambda: {"output": module(tokens)}, case)
    outputs = {"output": module(tokens)}
    return outputs | _backward(outputs, dict(module.named_parameters()), case.grad,
                               tokens.device)


def _text_case(generator: torch.Generator, name: str, vocab_size: int = 13,
               context_length: int = 8, dim: int = 16, depth: int = 2, num_heads: int = 2,
               batch: int = 3, length: int | None = None, lengths=None,
               dtype: torch.dtype = torch.float32, raises=None) -> Case:
    sizes = dict(zip(TEXT_SIZES, (vocab_size, context_length, dim, depth, num_heads),
                     strict=True))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        shape = ReferenceTextTransformer(vocab_size, context_length, dim, depth, num_heads)
    weights = _random_weights(shape, generator, dtype)
    tokens = _tokens(generator, batch, length or context_length, vocab_size, lengths)
    grads = () if raises else ("token_embedding.weight", "pos_embedding",
                               "blocks.0.attn.qkv.weight", "norm.weight")
    return Case(name, {**sizes, "tokens": tokens, **{PARAM + k: v for k, v in weights.items()}},
                grad=grads, raises=raises)


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


# --- MiniCLIP(image_encoder, text_encoder, image_width, text_width, embed_dim) ---------------


class ReferenceMiniCLIP(nn.Module):
    """open_clip's ``CLIP`` in miniature (Radford et al. 2021, Figure 3)."""

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, image_width: int,
                 text_width: int, embed_dim: int):
        super().__init__()
        self.visual = image_encoder
        self.text = text_encoder
        self.image_projection = nn.Parameter(torch.randn(image_width, embed_dim)
                                             * image_width ** -0.5)
        self.text_projection = nn.Parameter(torch.randn(text_width, embed_dim)
                                            * text_width ** -0.5)
        self.logit_scale = nn.Parameter(torch.ones([]) * INIT_LOGIT_SCALE)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.visual(images) @ self.image_projection  # (B, E)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.text(tokens) @ self.text_projection  # (B, E)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        return self.encode_image(images), self.encode_text(tokens), scale


class _MiniCLIPVariant(nn.Module):
    """The reference with switches and its own code (see _TextTransformerVariant)."""

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, image_width: int,
                 text_width: int, embed_dim: int, normalize: bool = True,
                 init: float = INIT_LOGIT_SCALE, exp: bool = True, clamp: bool = True,
                 project_after_normalize: bool = False):
        super().__init__()
        self.visual, self.text = image_encoder, text_encoder
        self.image_projection = nn.Parameter(torch.zeros(image_width, embed_dim))
        self.text_projection = nn.Parameter(torch.zeros(text_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(init)))
        self.normalize, self.exp, self.clamp = normalize, exp, clamp
        self.project_after_normalize = project_after_normalize

    def _encode(self, features, projection, normalize):
        if self.project_after_normalize:
            return F.normalize(features, dim=-1) @ projection
        features = features @ projection
        return F.normalize(features, dim=-1) if normalize and self.normalize else features

    def encode_image(self, images, normalize=True):
        return self._encode(self.visual(images), self.image_projection, normalize)

    def encode_text(self, tokens, normalize=True):
        return self._encode(self.text(tokens), self.text_projection, normalize)

    def forward(self, images, tokens):
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE) if self.clamp else self.logit_scale
        return self.encode_image(images), self.encode_text(tokens), \
            scale.exp() if self.exp else scale


def _clip_mistake(**switches) -> Callable:
    return functools.partial(_MiniCLIPVariant, **switches)


CLIP_SIZES = ("image_size", "patch_size", "image_width", "text_width", "embed_dim",
              "vocab_size", "context_length")


def _encoders(sizes: dict) -> tuple[nn.Module, nn.Module]:
    """The reference image and text encoders of a case (one block each, two heads)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        visual = blocks.VisionTransformer(sizes["image_size"], sizes["patch_size"], 3,
                                          sizes["image_width"], depth=1, num_heads=2,
                                          num_classes=0)
        text = blocks.TextTransformer(sizes["vocab_size"], sizes["context_length"],
                                      sizes["text_width"], depth=1, num_heads=2)
    return visual, text


def _build_clip(implementation: Callable, case: Case) -> tuple[nn.Module, Outputs]:
    """The model of a case, built by ``implementation`` around the reference encoders, its
    initial logit scale read, then loaded with the case's weights, on the case's device."""
    sizes = {k: case.inputs[k] for k in CLIP_SIZES}
    weights = _params(case)
    dtype = next(iter(weights.values())).dtype
    visual, text = _encoders(sizes)
    model = _make(implementation, visual, text, sizes["image_width"], sizes["text_width"],
                  sizes["embed_dim"])
    scale = getattr(model, "logit_scale", None)
    if not isinstance(scale, nn.Parameter):
        raise AttributeError(f"logit_scale must be an nn.Parameter holding ln(1/τ), a number "
                             f"the model learns; got {describe(scale)}")
    initial = {
        "logit_scale at initialisation": float(scale.detach().double().reshape(-1)[0]),
        "logit_scale is a learnable nn.Parameter of the model": isinstance(
            scale, nn.Parameter) and scale.requires_grad and any(
            p is scale for p in model.parameters()),
    }
    model.to(device=case.inputs["images"].device, dtype=dtype)
    _load(model, weights, "MiniCLIP")
    return model, initial


def _run_clip(implementation: Callable, case: Case) -> Outputs:
    model, outputs = _build_clip(implementation, case)
    images, tokens = case.inputs["images"], case.inputs["tokens"]
    with torch.no_grad():
        outputs["encode_image(images)"] = model.encode_image(images)
        outputs["encode_image(images, normalize=False)"] = model.encode_image(
            images, normalize=False)
        outputs["encode_text(tokens, normalize=True)"] = model.encode_text(
            tokens, normalize=True)
        outputs["encode_text(tokens, normalize=False)"] = model.encode_text(
            tokens, normalize=False)
    result = model(images, tokens)
    if not isinstance(result, tuple | list) or len(result) != 3:
        raise TypeError("forward(images, tokens) should return a tuple (image_features, "
                        "text_features, logit_scale.exp())")
    forward = {"forward(...)[0], the image features": result[0],
               "forward(...)[1], the text features": result[1],
               "forward(...)[2], the logit scale exp(logit_scale)": result[2]}
    outputs |= forward
    return outputs | _backward(forward, dict(model.named_parameters()), case.grad,
                               images.device)


def _clip_case(generator: torch.Generator, name: str, batch: int = 4, text_batch=None,
               image_size: int = 8, patch_size: int = 4, image_width: int = 16,
               text_width: int = 12, embed_dim: int = 10, vocab_size: int = 11,
               context_length: int = 6, logit_scale: float | None = None,
               dtype: torch.dtype = torch.float32) -> Case:
    sizes = dict(zip(CLIP_SIZES, (image_size, patch_size, image_width, text_width, embed_dim,
                                  vocab_size, context_length), strict=True))
    model = _make(ReferenceMiniCLIP, *_encoders(sizes), image_width, text_width, embed_dim)
    weights = _random_weights(model, generator, dtype)
    if logit_scale is not None:
        weights["logit_scale"] = torch.tensor(logit_scale, dtype=dtype)
    images = torch.rand(batch, 3, image_size, image_size, generator=generator, dtype=dtype)
    tokens = _tokens(generator, text_batch or batch, context_length, vocab_size)
    return Case(name, {**sizes, "images": images, "tokens": tokens,
                       **{PARAM + k: v for k, v in weights.items()}},
                grad=("image_projection", "text_projection", "logit_scale",
                      "visual.patch_embed.proj.weight"))


def _clip_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = [
        _clip_case(generator, "4 images and 4 captions, widths 16 and 12, embedding 10"),
        _clip_case(generator, "batch 1", batch=1),
        _clip_case(generator, "a logit scale above ln(100), where it is clamped",
                   logit_scale=5.0),
        _clip_case(generator, "float64", batch=3, dtype=torch.float64),
    ]
    if hidden:
        cases += [
            _clip_case(generator, "3 images, 5 captions, embedding wider than the encoders",
                       batch=3, text_batch=5, image_width=8, text_width=6, embed_dim=20),
            _clip_case(generator, "12×12 images in 3×3 patches, logit scale ln(100) exactly",
                       image_size=12, patch_size=3, logit_scale=MAX_LOGIT_SCALE),
            _clip_case(generator, "float64, a logit scale far above the clamp", batch=2,
                       logit_scale=7.5, dtype=torch.float64),
        ]
    return cases


MiniCLIP = Check(
    exercise="MiniCLIP",
    reference=ReferenceMiniCLIP,
    cases=_clip_cases,
    run=_run_clip,
    mistakes=[
        Mistake("logit_scale stores ln(1/τ), not τ: initialise it to ln(1/0.07) ≈ 2.659 "
                "(CLIP's temperature τ = 0.07), not to 0.07.", _clip_mistake(init=0.07)),
        Mistake("logit_scale stores the logarithm ln(1/τ) ≈ 2.659, not 1/τ ≈ 14.3: "
                "forward returns its exp().", _clip_mistake(init=1 / 0.07)),
        Mistake("the embeddings must be L2-normalised (F.normalize(x, dim=-1)) after the "
                "projection when normalize=True, so that their dot products are cosine "
                "similarities.", _clip_mistake(normalize=False)),
        Mistake("project first, then normalise: features @ projection, then F.normalize; "
                "normalising before the projection leaves the embeddings off the unit sphere.",
                _clip_mistake(project_after_normalize=True)),
        Mistake("forward returns the scale exp(logit_scale), the factor that multiplies the "
                "cosine similarities, not logit_scale itself.", _clip_mistake(exp=False)),
        Mistake("clamp logit_scale at ln(100) before exp() (CLIP clips the scale at 100).",
                _clip_mistake(clamp=False)),
    ],
)


# --- build_zero_shot_classifier(model, classnames, templates, tokenizer) -> (E, K) ----------


def reference_build_zero_shot_classifier(model: nn.Module, classnames: Sequence[str],
                                         templates: Sequence[str],
                                         tokenizer: Callable) -> torch.Tensor:
    """open_clip's ``build_zero_shot_classifier`` (note its argument order) on the model's
    device."""
    from open_clip import zero_shot_classifier

    if len(classnames) == 0 or len(templates) == 0:
        raise ValueError("expected at least one class name and one template")
    device = next(model.parameters()).device
    return zero_shot_classifier.build_zero_shot_classifier(
        model, tokenizer, list(classnames), list(templates), num_classes_per_batch=10,
        device=device)


def _run_zero_shot(implementation: Callable, case: Case) -> Outputs:
    weights = _params(case)
    sizes = {k: case.inputs[k] for k in CLIP_SIZES}
    model = _make(ReferenceMiniCLIP, *_encoders(sizes), sizes["image_width"],
                  sizes["text_width"], sizes["embed_dim"])
    model.to(device=case.inputs["device_marker"].device,
             dtype=next(iter(weights.values())).dtype)
    _load(model, weights, "the model")
    model.eval()
    tokenizer = functools.partial(reference_tokenize, vocab=build_vocabulary(),
                                  context_length=sizes["context_length"])
    classnames, templates = list(case.inputs["classnames"]), list(case.inputs["templates"])
    return _call_or_raise(
        lambda: {"output": implementation(model, classnames, templates, tokenizer)}, case)


def _zero_shot_case(generator: torch.Generator, name: str, classnames: Sequence[str],
                    templates: Sequence[str], embed_dim: int = 8,
                    dtype: torch.dtype = torch.float32, raises=None) -> Case:
    vocab_size = len(build_vocabulary())
    sizes = dict(zip(CLIP_SIZES, (8, 4, 8, 16, embed_dim, vocab_size, 12), strict=True))
    model = _make(ReferenceMiniCLIP, *_encoders(sizes), 8, 16, embed_dim)
    weights = _random_weights(model, generator, dtype)
    return Case(name, {**sizes, "classnames": list(classnames), "templates": list(templates),
                       "device_marker": torch.zeros(1),
                       **{PARAM + k: v for k, v in weights.items()}}, raises=raises)


def _zero_shot_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    prompts = list(PROMPT_TEMPLATES)
    cases = [
        _zero_shot_case(generator, "3 classes, 2 templates, embedding 8",
                        ["red circle", "blue square", "green triangle"],
                        ["a {}", "a photo of a {}"]),
        _zero_shot_case(generator, "the 15 classes and the 8 prompt templates (batches of "
                        "10 classes in open_clip), embedding 12", CLASSES, prompts,
                        embed_dim=12),
        _zero_shot_case(generator, "1 class, 1 template", ["yellow circle"], ["there is a {}"]),
        _zero_shot_case(generator, "float64, 4 classes, 3 templates",
                        CLASSES[4:8], prompts[2:5], dtype=torch.float64),
        _zero_shot_case(generator, "no templates, which it must refuse", CLASSES[:2], [],
                        raises=ValueError),
    ]
    if hidden:
        cases += [
            _zero_shot_case(generator, "as many classes as embedding dimensions (5)",
                            CLASSES[5:10], prompts[:4], embed_dim=5),
            _zero_shot_case(generator, "12 classes, 3 templates, words outside the "
                            "vocabulary", [f"{c} zebra" for c in CLASSES[:12]],
                            ["a {}", "{} on a dark background", "a drawing of two {}"],
                            embed_dim=7),
            _zero_shot_case(generator, "no classes, which it must refuse", [], prompts,
                            raises=ValueError),
        ]
    return cases


def _zero_shot_mistake(normalize_each=True, renormalize=True, transpose=True,
                       group="class") -> Callable:
    def build(model, classnames, templates, tokenizer):
        device = next(model.parameters()).device
        if group == "class":
            texts = [t.format(c) for c in classnames for t in templates]
        else:
            texts = [t.format(c) for t in templates for c in classnames]
        with torch.no_grad():
            features = model.encode_text(tokenizer(texts).to(device), normalize=normalize_each)
            features = features.reshape(len(classnames), len(templates), -1)  # (K, T, E)
            means = features.mean(dim=1)  # (K, E)
            if renormalize:
                means = F.normalize(means, dim=-1)
        return means.T if transpose else means

    return build


build_zero_shot_classifier = Check(
    exercise="build_zero_shot_classifier",
    reference=reference_build_zero_shot_classifier,
    cases=_zero_shot_cases,
    run=_run_zero_shot,
    mistakes=[
        Mistake("the classifier is (E, num_classes): one column per class, so that "
                "image_features @ classifier gives the logits (transpose the (K, E) means).",
                _zero_shot_mistake(transpose=False)),
        Mistake("re-normalise each class embedding after averaging over the templates: a "
                "mean of unit vectors is shorter than 1.", _zero_shot_mistake(renormalize=False)),
        Mistake("normalise each prompt's embedding before averaging "
                "(model.encode_text(tokens, normalize=True)), so that every template counts "
                "the same.", _zero_shot_mistake(normalize_each=False)),
        Mistake("the prompts are grouped by template, not by class: make the texts class by "
                "class ([t.format(c) for c in classnames for t in templates]) before the "
                "reshape to (K, T, E).", _zero_shot_mistake(group="template")),
    ],
    forbidden=Forbidden(
        code=["open_clip.zero_shot_classifier.build_zero_shot_classifier",
              "open_clip.zero_shot_classifier.build_zero_shot_classifier_legacy"],
        allowed="Fill in the templates, encode, average and normalise yourself.",
    ),
)


# --- recall_at_k(image_features, text_features, k) -> (image→text, text→image) --------------


def _check_recall_inputs(image_features, text_features, k) -> None:
    if image_features.ndim != 2 or image_features.shape != text_features.shape:
        raise ValueError("expected image and text features of the same shape (N, D), got "
                         f"{tuple(image_features.shape)} and {tuple(text_features.shape)}")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")


def reference_recall_at_k(image_features: torch.Tensor, text_features: torch.Tensor,
                          k: int) -> tuple[float, float]:
    """Brute force: pair i is found when fewer than k candidates score strictly higher."""
    _check_recall_inputs(image_features, text_features, k)
    similarity = (image_features @ text_features.T).tolist()  # (N, N)
    n = len(similarity)
    image_hits = text_hits = 0
    for i in range(n):
        better_texts = sum(similarity[i][j] > similarity[i][i] for j in range(n))
        better_images = sum(similarity[j][i] > similarity[i][i] for j in range(n))
        image_hits += better_texts < k
        text_hits += better_images < k
    return image_hits / n, text_hits / n


def recall_figures(image_features: torch.Tensor, text_features: torch.Tensor,
                   ks: Sequence[int] = (1, 5), same: torch.Tensor | None = None,
                   ) -> dict[int, tuple[float, float]]:
    """Recall@k, vectorised: {k: (image→text, text→image)}.

    Without ``same``, as the exercise: ties count in the pair's favour. With ``same`` (N, N),
    True where pairs i and j have the same caption, as the graded check: a candidate with
    another caption that scores *at least* as high counts against the pair, while candidates
    with the same caption are as good as the true partner. (So a model that maps everything to
    one vector finds nothing, instead of everything.)
    """
    similarity = image_features @ text_features.T  # (N, N)
    true = similarity.diagonal()  # (N,)
    if same is None:
        text_rank = (similarity > true[:, None]).sum(dim=1)  # (N,) texts above each image's own
        image_rank = (similarity > true[None, :]).sum(dim=0)  # (N,) images above each text's
    else:
        text_rank = ((similarity >= true[:, None]) & ~same).sum(dim=1)  # (N,)
        image_rank = ((similarity >= true[None, :]) & ~same).sum(dim=0)  # (N,)
    return {k: ((text_rank < k).double().mean().item(), (image_rank < k).double().mean().item())
            for k in ks}


def _recall_mistake(swap=False, shift=0, ties="favour", percent=False, tensors=False):
    def recall(image_features, text_features, k):
        similarity = image_features @ text_features.T
        true = similarity.diagonal()
        if ties == "favour":
            text_rank = (similarity > true[:, None]).sum(1)
            image_rank = (similarity > true[None, :]).sum(0)
        else:  # a tie counts against the pair (the pair itself is not counted)
            text_rank = (similarity >= true[:, None]).sum(1) - 1
            image_rank = (similarity >= true[None, :]).sum(0) - 1
        k = k + shift
        values = [(text_rank < k).float().mean(), (image_rank < k).float().mean()]
        if swap:
            values.reverse()
        values = [v * 100 if percent else v for v in values]
        return tuple(values) if tensors else tuple(v.item() for v in values)

    return recall


def _recall_topk(image_features, text_features, k):
    """Recall@k with topk: right without ties, arbitrary among tied candidates."""
    similarity = image_features @ text_features.T  # (N, N)
    n, k = len(similarity), min(int(k), len(similarity))
    truth = torch.arange(n, device=similarity.device)
    image = (similarity.topk(k, dim=1).indices == truth[:, None]).any(dim=1)  # (N,)
    text = (similarity.topk(k, dim=0).indices == truth[None, :]).any(dim=0)  # (N,)
    return image.float().mean().item(), text.float().mean().item()


def _features(generator, n, d, dtype=torch.float32):
    return F.normalize(torch.randn(n, d, generator=generator, dtype=torch.float64), dim=-1
                       ).to(dtype)


def _tied(generator, n, d=4, duplicates=()):
    """Unit vectors with entries ±1/√d (d a power of 4: exact dot products, many ties)."""
    signs = torch.randint(0, 2, (n, d), generator=generator).double() * 2 - 1
    for a, b in duplicates:
        signs[b] = signs[a]
    return (signs / math.sqrt(d)).float()


def _recall_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    def case(name, images, texts, k, raises=None):
        return Case(name, {"image_features": images, "text_features": texts, "k": k},
                    raises=raises)

    images, texts = _features(generator, 9, 5), _features(generator, 9, 5)
    texts_near = F.normalize(images + 0.8 * _features(generator, 9, 5), dim=-1)
    tied_images, tied_texts = _tied(generator, 10), _tied(generator, 10, duplicates=[(0, 1),
                                                                                       (2, 3)])
    cases = [
        case("9 pairs, k = 1", images, texts_near, 1),
        case("9 pairs, k = 3", images, texts, 3),
        case("10 pairs with ties (identical captions and equal scores), k = 2",
             tied_images, tied_texts, 2),
        case("k larger than the number of pairs", images[:4], texts[:4], 7),
        case("1 pair", images[:1], texts[:1], 1),
        case("float64, 9 pairs, k = 4", images.double(), texts_near.double(), 4),
        case("8 images but 9 captions, which it must refuse", images[:8], texts, 1,
             raises=ValueError),
        case("k = 0, which it must refuse", images, texts, 0, raises=ValueError),
    ]
    if hidden:
        big_i, big_t = _features(generator, 37, 8), _features(generator, 37, 8)
        big_t = F.normalize(big_i + 1.2 * big_t, dim=-1)
        tied_i, tied_t = _tied(generator, 12, 16), _tied(generator, 12, 16,
                                                         duplicates=[(4, 5), (5, 6)])
        cases += [
            case("37 pairs, k = 5", big_i, big_t, 5),
            case("37 pairs, k = 1", big_i, big_t, 1),
            case("12 pairs with ties, k = 1", tied_i, tied_i.clone(), 1),
            case("12 pairs with ties, k = 3", tied_i, tied_t, 3),
            case("k = N", big_i[:6], big_t[:6], 6),
        ]
    return cases


recall_at_k = Check(
    exercise="recall_at_k",
    reference=reference_recall_at_k,
    cases=_recall_cases,
    tolerance=(1e-6, 1e-7),  # a mean taken in float32 is fine
    mistakes=[
        Mistake("the two directions are swapped: image→text ranks the captions for each image "
                "(a row of S = I Tᵀ), text→image ranks the images for each caption (a column).",
                _recall_mistake(swap=True)),
        Mistake("topk breaks ties arbitrarily: when several candidates score exactly as high "
                "as the true partner, it may keep them and drop the partner. Count the "
                "candidates that score strictly higher instead (found when fewer than k do).",
                _recall_topk),
        Mistake("k is off by one: Recall@k counts a pair as found when it is among the k best "
                "candidates, i.e. when fewer than k candidates score strictly higher.",
                _recall_mistake(shift=1)),
        Mistake("k is off by one: Recall@k counts a pair as found when it is among the k best "
                "candidates, i.e. when fewer than k candidates score strictly higher.",
                _recall_mistake(shift=-1)),
        Mistake("a tie is not a miss: count only the candidates that score strictly higher "
                "than the true partner (an identical caption scores exactly the same).",
                _recall_mistake(ties="against")),
        Mistake("return fractions in [0, 1], not percentages.", _recall_mistake(percent=True)),
        Mistake("return two Python floats (.item()), not tensors.",
                _recall_mistake(tensors=True)),
    ],
)


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
    scenes = generate_scenes(n, seed=_seed(generator), split="train", num_objects=(2, 4))
    scenes = [Scene(tuple(dataclasses.replace(o, colour=s.objects[0].colour,
                                              shape=s.objects[0].shape) for o in s.objects))
              if i % 2 == 0 else s for i, s in enumerate(scenes)]
    return caption_scenes(scenes, seed=_seed(generator))


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


# --- graded thresholds on the trained model ---------------------------------------------------

ZERO_SHOT = "zero-shot accuracy, 15 classes (graded)"
COMPOSITIONAL = "zero-shot accuracy on the 3 held-out pairs (compositional, not graded)"
GALLERY = 100  # retrieval among 100 candidates, as in the notebook


def _context(texts: Sequence[str]) -> int:
    """The shortest context that holds every text: longest + <start> + <end>."""
    return max(len(t.split()) for t in texts) + 2


def _device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _encode(model, case: Case) -> Outputs:
    """The trained model's unit embeddings of the case's images and texts (batches of 500)."""
    device = _device(model)
    images, tokens = case.inputs["images"], case.inputs["tokens"]
    image_features = torch.cat([model.encode_image(images[i:i + 500].to(device)).float().cpu()
                                for i in range(0, len(images), 500)])
    text_features = torch.cat([model.encode_text(tokens[i:i + 500].to(device)).float().cpu()
                               for i in range(0, len(tokens), 500)])
    return {"image_features": image_features, "text_features": text_features}


def _unit(outputs: Outputs, key: str, rows: int) -> torch.Tensor:
    value = outputs[key]
    if type(value) is not torch.Tensor or value.ndim != 2 or len(value) != rows:
        raise ValueError(f"{key} should be a ({rows}, E) tensor, got "
                         f"{getattr(value, 'shape', type(value).__name__)}")
    return F.normalize(value.double(), dim=-1)


def _zero_shot_quality_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    seed = _seed(generator)
    prompts = [p for c in CLASSES for p in class_prompts(c)]  # class-major, (15·8,)
    tokens = reference_tokenize(prompts, build_vocabulary(), _context(prompts))
    size = 1200 if hidden else 600
    seen = ShapesClassification("test", size=size, seed=seed, hold_out=True)
    held = ShapesClassification("compositional", size=size // 2, seed=seed, hold_out=True)
    return [
        Case(f"{size} held-out one-object images of the 12 pairs seen in training, "
             "classified among all 15 classes", {"images": seen.images, "tokens": tokens},
             private={"labels": seen.labels, "figure": ZERO_SHOT}),
        Case(f"{size // 2} images of the 3 pairs held out of training, among all 15 classes",
             {"images": held.images, "tokens": tokens},
             private={"labels": held.labels, "figure": COMPOSITIONAL}),
    ]


def _zero_shot_score(case: Case, outputs: Outputs) -> dict[str, float]:
    labels = case.private["labels"]
    images = _unit(outputs, "image_features", len(labels))
    texts = _unit(outputs, "text_features", len(CLASSES) * len(PROMPT_TEMPLATES))
    classifier = F.normalize(texts.reshape(len(CLASSES), len(PROMPT_TEMPLATES), -1).mean(1),
                             dim=-1)  # (15, E): prompt ensemble (Radford et al. 2021, §3.1.4)
    predictions = (images @ classifier.T).argmax(dim=1)  # (N,)
    return {case.private["figure"]: (predictions == labels).double().mean().item()}


zero_shot_quality = QualityCheck(
    exercise="MiniCLIP zero-shot accuracy",
    cases=_zero_shot_quality_cases,
    run=_encode,
    score=_zero_shot_score,
    thresholds={ZERO_SHOT: 0.95},
    hint="train longer or check the training recipe (single-object captions in the data, "
         "batch 64, learning rate 2e-3); every exercise's test must pass first.",
)


def _retrieval_quality_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    size = 1000 if hidden else 500
    pairs = ShapesCaptions("test", size=size, seed=_seed(generator), hold_out=True)
    tokens = reference_tokenize(pairs.captions, build_vocabulary(), _context(pairs.captions))
    return [Case(f"{size} held-out image–caption pairs, in galleries of {GALLERY}",
                 {"images": pairs.images, "tokens": tokens},
                 private={"size": size, "tokens": tokens.clone()})]


def _retrieval_score(case: Case, outputs: Outputs) -> dict[str, float]:
    size = case.private["size"]
    images = _unit(outputs, "image_features", size)
    texts = _unit(outputs, "text_features", size)
    totals = {(k, d): 0.0 for k in (1, 5) for d in (0, 1)}
    galleries = range(0, size, GALLERY)
    for start in galleries:
        tokens = case.private["tokens"][start:start + GALLERY]  # (G, L)
        same = (tokens[:, None, :] == tokens[None, :, :]).all(dim=-1)  # (G, G) same caption
        figures = recall_figures(images[start:start + GALLERY], texts[start:start + GALLERY],
                                 same=same)
        for (k, direction) in totals:
            totals[k, direction] += figures[k][direction] / len(galleries)
    return {f"{'image→text' if d == 0 else 'text→image'} Recall@{k} (graded)": value
            for (k, d), value in sorted(totals.items())}


retrieval_quality = QualityCheck(
    exercise="MiniCLIP retrieval",
    cases=_retrieval_quality_cases,
    run=_encode,
    score=_retrieval_score,
    thresholds={"image→text Recall@5 (graded)": 0.90, "text→image Recall@5 (graded)": 0.90},
    hint="train longer or check the training recipe; every exercise's test must pass first.",
)
