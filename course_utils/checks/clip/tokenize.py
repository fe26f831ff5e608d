"""Check of ``tokenize(captions, vocab, context_length)``, against a word-level version of
open_clip's ``SimpleTokenizer.__call__`` written out here."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.clip._inputs import seed_from
from course_utils.checks.core import Check
from course_utils.checks.runners import expect_raise
from course_utils.data import Vocabulary, build_vocabulary, caption_scenes, generate_scenes
from course_utils.data import vocab as vocabulary

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
    tokens = torch.full((len(captions), context_length), vocab.pad_id, dtype=torch.long)
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
    """The case's vocabulary is built from its word list (``specials="last"``: an _EndsLast)."""
    kind = _EndsLast if case.inputs.get("specials") == "last" else Vocabulary
    vocab = kind(case.inputs["words"])
    captions = case.inputs["captions"]
    captions = captions if isinstance(captions, str) else list(captions)

    def tokens() -> torch.Tensor:
        return implementation(captions, vocab, case.inputs["context_length"])

    if case.raises is not None:
        return expect_raise(tokens, case)
    return {"output": tokens()}


def _tokenize_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    words = [w for w in build_vocabulary().words if w not in vocabulary.SPECIAL_TOKENS]
    scenes = generate_scenes(12, seed=seed_from(generator), split="train")
    captions = caption_scenes(scenes, seed=seed_from(generator))

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


def _tokenize_mistake(cut_keeps_end=True, start=True, end=True, pad=Vocabulary.pad_id,
                      dtype=torch.long, fixed_ids=False):
    def tokenize(captions, vocab, context_length):
        # fixed_ids: the course vocabulary's <start> and <end>, written into the code
        start_id, end_id = ((Vocabulary.start_id, Vocabulary.end_id) if fixed_ids
                            else (vocab.start_id, vocab.end_id))
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
                _tokenize_mistake(pad=Vocabulary.end_id)),
        Mistake("take <start> and <end> from the vocabulary (vocab.start_id, vocab.end_id), "
                "not as fixed numbers: another vocabulary puts them elsewhere.",
                _tokenize_mistake(fixed_ids=True)),
        Mistake("token ids index an embedding table: return a long (int64) tensor.",
                _tokenize_mistake(dtype=torch.float32)),
        Mistake("token ids index an embedding table: return a long (int64) tensor, not int32.",
                _tokenize_mistake(dtype=torch.int32)),
    ],
)
