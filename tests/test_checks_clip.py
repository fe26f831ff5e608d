"""The checks of notebook 04_mini_clip: they accept the solution and reject wrong answers.

The wrong answers are written the way a student would write them (from the solution, with one
thing changed), and each must be rejected with the hint that names its mistake. The graded
thresholds are tested with stand-in models (an oracle and a poor one), never by training.
"""

from __future__ import annotations

import hashlib
import math
import socket
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import data
from course_utils.blocks import transformer as blocks
from course_utils.checks import CheckFailure
from course_utils.checks import clip as checks
from course_utils.checks.clip.recall_at_k import _check_recall_inputs
from tests.notebook_code import check_skips_offline, load_solution, rejects, solution_notebook

EXERCISES = ["tokenize", "TextTransformer", "MiniCLIP", "build_zero_shot_classifier",
             "recall_at_k", "count_swap"]


@pytest.fixture(scope="module")
def solution() -> dict:
    return load_solution("04_mini_clip")



# --- every check accepts the solution, quietly -------------------------------------------------


@pytest.mark.parametrize("name", EXERCISES)
def test_accepts_the_solution_visible_and_hidden(solution, name, capsys):
    check = getattr(checks, name)
    check(solution[name])
    check(solution[name], seed=2026, hidden=True)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert f"✓ {name}: " in captured.out and "hidden cases passed" in captured.out


@pytest.mark.parametrize("name", EXERCISES)
def test_every_registered_mistake_is_rejected_with_its_hint(name):
    check = getattr(checks, name)
    assert check.mistakes
    for mistake in check.mistakes:
        rejects(check, mistake.implementation, mistake.hint)


@pytest.mark.parametrize("name", EXERCISES)
def test_cases_are_plain_data(name):
    """Cases cross a process boundary: tensors, numbers, strings and lists of strings only."""
    check = getattr(checks, name)
    for case in check.cases(torch.Generator().manual_seed(0), True):
        for key, value in case.inputs.items():
            ok = torch.is_tensor(value) or type(value) in (int, float, str) or (
                type(value) is list and all(type(v) is str for v in value))
            assert ok, f"{name}: {case.name}: {key} is a {type(value).__name__}"


def test_a_blank_exercise_says_it_is_not_implemented():
    def blank(*args, **kwargs):
        raise NotImplementedError()

    for name in EXERCISES:
        rejects(getattr(checks, name), blank, "not implemented yet")


# --- tokenize ----------------------------------------------------------------------------------


def test_tokenize_end_token_lost_on_truncation(solution):
    def cut_after_framing(captions, vocab, context_length):
        captions = [captions] if isinstance(captions, str) else captions
        tokens = torch.zeros(len(captions), context_length, dtype=torch.long)
        for row, caption in enumerate(captions):
            ids = ([vocab.start_id] + vocab.encode(caption) + [vocab.end_id])[:context_length]
            tokens[row, :len(ids)] = torch.tensor(ids)
        return tokens

    rejects(checks.tokenize, cut_after_framing, "lost its <end> token",
            "cut the words to context_length − 2", "case: captions longer than context_length")


@pytest.mark.parametrize("wrong, fragments", [
    (lambda tok: lambda c, v, n: tok(c, v, n).int(), ("dtype torch.int32", "long (int64)")),
    (lambda tok: lambda c, v, n: tok(c, v, n).float(), ("dtype torch.float32", "long")),
    (lambda tok: lambda c, v, n: tok(c, v, n).to("meta"), ("is on meta",)),
    (lambda tok: lambda c, v, n: F.pad(tok(c, v, n)[:, 1:], (0, 1)), ("starts with <start>",)),
    (lambda tok: lambda c, v, n: torch.where(tok(c, v, n) == 0, 2, tok(c, v, n)),
     ("pad with 0",)),
    (lambda tok: lambda c, v, n: tok(c, v, n).tolist(), ("should be a torch.Tensor",)),
    (lambda tok: lambda c, v, n: tok(c, v, max(n, 2)), ("expected it to raise ValueError",)),
])
def test_tokenize_rejects_wrong_answers(solution, wrong, fragments):
    rejects(checks.tokenize, wrong(solution["tokenize"]), *fragments)


def test_tokenize_needs_the_vocabulary_it_is_given(solution):
    fixed = data.build_vocabulary()

    def hard_coded(captions, vocab, context_length):
        return solution["tokenize"](captions, fixed, context_length)

    with pytest.raises(CheckFailure, match="another vocabulary"):  # the visible cases too
        checks.tokenize(hard_coded)
    with pytest.raises(CheckFailure, match="another vocabulary"):
        checks.tokenize(hard_coded, hidden=True)


# --- TextTransformer ----------------------------------------------------------------------------


def _text_variant(solution, forward):
    class Variant(solution["TextTransformer"]):
        pass

    Variant.forward = forward
    return Variant


def _text_forward(causal=True, readout="end", norm=True, positions=True, detach=False):
    def forward(self, tokens):
        batch, length = tokens.shape
        if length > self.context_length:
            raise ValueError("too long")
        x = self.token_embedding(tokens)  # (B, L, D)
        if positions:
            x = x + self.pos_embedding[:, :length]
        mask = self.causal_mask[:length, :length][None, None] if causal else None
        for block in self.blocks:
            x = block(x, mask)
        if norm:
            x = self.norm(x)
        rows = torch.arange(batch, device=tokens.device)
        index = {"end": (tokens != 0).sum(1) - 1, "last": torch.full_like(rows, length - 1),
                 "first": torch.zeros_like(rows), "argmax": tokens.argmax(-1)}[readout]
        out = x[rows, index]
        return out.detach() if detach else out

    return forward


@pytest.mark.parametrize("switches, fragments", [
    ({"causal": False}, ("attention must be causal",)),
    ({"readout": "last"}, ("not at the last position",)),
    ({"readout": "first"}, ("the first token (<start>) has seen nothing",)),
    ({"readout": "argmax"}, ("argmax(-1) finds the end token only in OpenAI's vocabulary",)),
    ({"norm": False}, ("final LayerNorm",)),
    ({"positions": False}, ("position embeddings",)),
    ({"detach": True}, ("no gradient reached",)),
])
def test_text_transformer_rejects_common_mistakes(solution, switches, fragments):
    rejects(checks.TextTransformer, _text_variant(solution, _text_forward(**switches)),
            *fragments)


def test_text_transformer_refuses_the_library_version():
    class Borrowed(blocks.TextTransformer):
        def __init__(self, vocab_size, context_length, dim, depth, num_heads):
            super().__init__(vocab_size, context_length, dim, depth, num_heads)

    rejects(checks.TextTransformer, Borrowed, "which this exercise builds from scratch")
    # and the library class works again afterwards
    blocks.TextTransformer(10, 5, 8, 1, 2)(torch.tensor([[1, 5, 2, 0, 0]]))


def test_text_transformer_rejects_wrong_names_dtypes_and_devices(solution):
    base = solution["TextTransformer"]

    class Renamed(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.final_norm = self.norm
            del self.norm

        def forward(self, tokens):
            self.norm = self.final_norm
            return super().forward(tokens)

    rejects(checks.TextTransformer, Renamed, "raised WrongParameters",
            "must have the names the exercise's docstring gives", "final_norm")

    class Doubled(base):
        def forward(self, tokens):
            return super().forward(tokens).double()

    rejects(checks.TextTransformer, Doubled, "dtype torch.float64")

    class Elsewhere(base):
        def forward(self, tokens):
            return super().forward(tokens).to("meta")

    rejects(checks.TextTransformer, Elsewhere, "is on meta")

    class NoValueError(base):
        def forward(self, tokens):  # cuts a row that is too long instead of refusing it
            return _text_forward()(self, tokens[:, :self.context_length])

    rejects(checks.TextTransformer, NoValueError, "expected it to raise ValueError")


# --- MiniCLIP ----------------------------------------------------------------------------------


def _clip_variant(solution, **changes):
    base = solution["MiniCLIP"]

    class Variant(base):
        def __init__(self, *args):
            super().__init__(*args)
            if "init" in changes:
                self.logit_scale = nn.Parameter(torch.tensor(changes["init"]))
            if changes.get("buffer"):
                del self.logit_scale
                self.register_buffer("logit_scale", torch.tensor(math.log(1 / 0.07)))

        def encode_image(self, images, normalize=True):
            return super().encode_image(images, normalize and not changes.get("raw"))

        def encode_text(self, tokens, normalize=True):
            return super().encode_text(tokens, normalize and not changes.get("raw"))

        def forward(self, images, tokens):
            image_features, text_features, scale = super().forward(images, tokens)
            if changes.get("no_exp"):
                scale = self.logit_scale.clamp(max=math.log(100))
            if changes.get("no_clamp"):
                scale = self.logit_scale.exp()
            if changes.get("detach"):
                image_features = image_features.detach()
            return image_features, text_features, scale

    return Variant


@pytest.mark.parametrize("changes, fragments", [
    ({"raw": True}, ("must be L2-normalised",)),
    ({"init": 0.07}, ("logit_scale at initialisation", "not to 0.07")),
    ({"init": 1 / 0.07}, ("not 1/τ ≈ 14.3",)),
    ({"no_exp": True}, ("returns the scale exp(logit_scale)",)),
    ({"no_clamp": True}, ("clamp logit_scale at ln(100)",)),
    ({"buffer": True}, ("logit_scale must be an nn.Parameter",)),
    ({"detach": True}, ("no gradient reached `image_projection`",)),
])
def test_mini_clip_rejects_common_mistakes(solution, changes, fragments):
    rejects(checks.MiniCLIP, _clip_variant(solution, **changes), *fragments)


def test_mini_clip_needs_the_open_clip_call_convention(solution):
    class NoFlag(solution["MiniCLIP"]):
        def encode_text(self, tokens):  # no normalize argument
            return super().encode_text(tokens)

    rejects(checks.MiniCLIP, NoFlag, "TypeError")

    class LinearProjections(solution["MiniCLIP"]):
        def __init__(self, image_encoder, text_encoder, image_width, text_width, embed_dim):
            super().__init__(image_encoder, text_encoder, image_width, text_width, embed_dim)
            del self.image_projection
            self.image_proj = nn.Linear(image_width, embed_dim, bias=False)

    rejects(checks.MiniCLIP, LinearProjections, "raised WrongParameters",
            "must have the names the exercise's docstring gives", "image_proj.weight")


# --- build_zero_shot_classifier -----------------------------------------------------------------


def _averaged(normalize_each=True, renormalize=True):
    def build(model, classnames, templates, tokenizer):
        if not classnames or not templates:
            raise ValueError("empty")
        device = next(model.parameters()).device
        texts = [t.format(c) for c in classnames for t in templates]
        with torch.no_grad():
            embeddings = model.encode_text(tokenizer(texts).to(device), normalize=normalize_each)
            means = embeddings.reshape(len(classnames), len(templates), -1).mean(dim=1)
            if renormalize:
                means = F.normalize(means, dim=-1)
        return means.T

    return build


def test_zero_shot_classifier_rejects_common_mistakes(solution):
    build = solution["build_zero_shot_classifier"]
    rejects(checks.build_zero_shot_classifier, lambda *args: build(*args).T,
            "has shape (3, 8), expected (8, 3)", "one column per class")
    rejects(checks.build_zero_shot_classifier, _averaged(renormalize=False),
            "re-normalise each class embedding after averaging")
    rejects(checks.build_zero_shot_classifier, _averaged(normalize_each=False),
            "normalise each prompt's embedding before averaging")
    rejects(checks.build_zero_shot_classifier, lambda *args: build(*args).to("meta"),
            "is on meta")
    rejects(checks.build_zero_shot_classifier, lambda *args: build(*args).double(),
            "dtype torch.float64")


def test_zero_shot_classifier_transposed_is_caught_when_square(solution):
    build = solution["build_zero_shot_classifier"]

    def transposed_when_square(*args):
        weights = build(*args)
        return weights.T if weights.shape[0] == weights.shape[1] else weights

    checks.build_zero_shot_classifier(transposed_when_square)  # no square visible case
    message = rejects(lambda fn: checks.build_zero_shot_classifier(fn, seed=1, hidden=True),
                      transposed_when_square, "one column per class")
    assert "as many classes as embedding dimensions" in message


from open_clip.zero_shot_classifier import (  # noqa: E402 (a student's early import)
    build_zero_shot_classifier as imported_early,
)


@pytest.mark.parametrize("how", ["module attribute", "top-level alias", "imported early"])
def test_zero_shot_classifier_refuses_open_clips(how):
    import open_clip

    library = {"module attribute": lambda: open_clip.zero_shot_classifier
               .build_zero_shot_classifier, "top-level alias": lambda: open_clip
               .build_zero_shot_classifier, "imported early": lambda: imported_early}[how]

    def borrowed(model, classnames, templates, tokenizer):
        device = next(model.parameters()).device
        return library()(model, tokenizer, classnames, templates, device=device)

    rejects(checks.build_zero_shot_classifier, borrowed, "which this exercise builds from "
                                                         "scratch")


# --- count_swap --------------------------------------------------------------------------------


def test_count_swap_accepts_a_correct_answer_written_differently():
    import re

    following = {"two": "three", "three": "four", "four": "two"}

    def with_a_regex(caption):
        pattern = r"\b(two|three|four)\b"
        if re.search(pattern, caption) is None:
            return None
        return re.sub(pattern, lambda match: following[match.group()], caption)

    checks.count_swap(with_a_regex)
    checks.count_swap(with_a_regex, seed=2026, hidden=True)


def test_count_swap_rejects_wrong_answers(solution):
    swap = solution["count_swap"]

    def chained(caption):  # each replace undoes the one before
        out = caption.replace("two", "three").replace("three", "four").replace("four", "two")
        return out if any(w in ("two", "three", "four") for w in caption.split()) else None

    def unchanged(caption):
        return caption

    def to_one(caption):  # four -> "one": "one red circles" breaks the plural
        words = caption.split()
        if not any(w in data.COUNT_WORDS[2:] for w in words):
            return None
        return " ".join(data.COUNT_WORDS[data.COUNT_WORDS.index(w) + 1]
                        if w in ("two", "three") else "one" if w == "four" else w for w in words)

    def also_a(caption):  # treats "a" as a count too ("two photo of ...")
        return " ".join("two" if w == "a" else w for w in (swap(caption) or caption).split())

    def first_only(caption):
        words = caption.split()
        for i, w in enumerate(words):
            if w in ("two", "three", "four"):
                return " ".join(words[:i] + swap(w).split() + words[i + 1:])
        return None

    rejects(checks.count_swap, chained, "names the same count")
    rejects(checks.count_swap, unchanged, "names the same count")
    rejects(checks.count_swap, to_one, "stay a plural count")
    rejects(checks.count_swap, also_a, "\"a\" is not one of them")
    rejects(checks.count_swap, first_only, "swap every count word")
    rejects(checks.count_swap, lambda c: swap(c) or c, "return None")
    rejects(checks.count_swap, lambda c: swap(c).upper() if swap(c) else None, "count_swap")


# --- recall_at_k -------------------------------------------------------------------------------


def test_recall_rejects_common_mistakes(solution):
    recall = solution["recall_at_k"]
    rejects(checks.recall_at_k, lambda i, t, k: recall(i, t, k)[::-1],
            "the two directions are swapped")
    rejects(checks.recall_at_k, lambda i, t, k: recall(i, t, k + 1), "k is off by one")
    rejects(checks.recall_at_k, lambda i, t, k: recall(i, t, max(k - 1, 1)) if k > 0 else
            recall(i, t, k), "k is off by one")
    rejects(checks.recall_at_k, lambda i, t, k: tuple(torch.tensor(r) for r in recall(i, t, k)),
            "Python float", "not tensors")
    rejects(checks.recall_at_k, lambda i, t, k: tuple(100 * r for r in recall(i, t, k)),
            "not percentages")


def test_recall_counts_ties_in_the_pairs_favour():
    def topk_recall(image_features, text_features, k):  # ties broken by index, not in favour
        _check_recall_inputs(image_features, text_features, k)
        similarity = image_features @ text_features.T
        n = len(similarity)
        found = torch.arange(n, device=similarity.device)[:, None]
        image = (similarity.topk(min(k, n), dim=1).indices == found).any(1).double().mean()
        text = (similarity.T.topk(min(k, n), dim=1).indices == found).any(1).double().mean()
        return image.item(), text.item()

    rejects(checks.recall_at_k, topk_recall, "with ties")


def _on_circle(degrees: list[float]) -> torch.Tensor:
    angles = torch.deg2rad(torch.tensor(degrees))
    return torch.stack([angles.cos(), angles.sin()], dim=1)


def test_recall_reference_is_a_brute_force_count():
    images, texts = _on_circle([0.0, 90.0, 50.0]), _on_circle([0.0, 72.0, 26.0])
    assert checks.reference_recall_at_k(images, texts, 1) == pytest.approx((2 / 3, 1.0))
    assert checks.reference_recall_at_k(images, texts, 2) == (1.0, 1.0)
    figures = checks.recall_figures(images, texts, ks=(1, 2))
    assert figures[1] == pytest.approx((2 / 3, 1.0)) and figures[2] == (1.0, 1.0)


# --- the graded thresholds, with stand-in models ------------------------------------------------


def _key(image: torch.Tensor) -> str:
    return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()


class StandIn(nn.Module):
    """A 'trained model' that knows the answers (or only part of them), without training."""

    def __init__(self, image_words: dict[str, str], keep: set[str] | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.image_words, self.keep = image_words, keep
        self.vocab = data.build_vocabulary()

    def embed(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), len(self.vocab))
        for row, text in enumerate(texts):
            for word in text.split():
                if self.keep is None or word in self.keep:
                    out[row, self.vocab[word]] += 1
        return F.normalize(out + 1e-3, dim=-1)

    def encode_image(self, images, normalize=True):
        return self.embed([self.image_words.get(_key(image), "") for image in images.cpu()])

    def encode_text(self, tokens, normalize=True):
        return self.embed([self.vocab.decode(row) for row in tokens.cpu()])


def _zero_shot_model(keep=None, hidden=False) -> StandIn:
    words = {}
    for case in checks.zero_shot_quality.cases(torch.Generator().manual_seed(0), hidden):
        for image, label in zip(case.inputs["images"], case.private["labels"], strict=True):
            words[_key(image)] = data.CLASSES[label]
    return StandIn(words, keep)


def test_zero_shot_quality_passes_a_model_that_knows_the_classes(capsys):
    checks.zero_shot_quality(_zero_shot_model())
    out = capsys.readouterr().out
    assert "held-out pairs (compositional, not graded): 100.0 %" in out
    # the cell's last line is the graded figure and its threshold
    assert out.strip().splitlines()[-1] == ("✓ zero-shot accuracy, 15 classes (graded): "
                                            "100.0 % (at least 95.0 %): passed")


def test_zero_shot_quality_fails_a_colour_blind_model():
    shapes_only = set(data.SHAPES)
    rejects(checks.zero_shot_quality, _zero_shot_model(keep=shapes_only),
            "needs at least 95.0 %")


def test_zero_shot_quality_uses_fresh_images_for_hidden_seeds():
    seen = _zero_shot_model()  # knows the visible images only
    with pytest.raises(CheckFailure, match="needs at least 95.0 %"):
        checks.zero_shot_quality(seen, seed=2026, hidden=True)


def _retrieval_model(shift: int = 0) -> StandIn:
    """Knows each image's caption (``shift`` > 0: the caption of another image)."""
    vocab = data.build_vocabulary()
    case, = checks.retrieval_quality.cases(torch.Generator().manual_seed(0), False)
    captions = [vocab.decode(tokens) for tokens in case.inputs["tokens"]]
    return StandIn({_key(image): captions[(i + shift) % len(captions)]
                    for i, image in enumerate(case.inputs["images"])})


def test_retrieval_quality_passes_a_model_that_reads_the_captions(capsys):
    checks.retrieval_quality(_retrieval_model())
    out = capsys.readouterr().out
    assert "✓ image→text Recall@5 (graded)" in out and "✓ text→image Recall@5 (graded)" in out
    assert "image→text Recall@1 (graded)" in out


def test_retrieval_quality_fails_a_model_that_mixes_up_the_images():
    rejects(checks.retrieval_quality, _retrieval_model(shift=1), "Recall@5 (graded)",
            "needs at least 90.0 %")


def test_retrieval_quality_fails_a_model_that_says_the_same_for_everything():
    rejects(checks.retrieval_quality, StandIn({}, keep=set()), "needs at least 90.0 %")


def test_quality_checks_refuse_unscorable_outputs():
    class Shapeless(StandIn):
        def encode_text(self, tokens, normalize=True):
            return super().encode_text(tokens)[:3]

    model = _zero_shot_model()
    rejects(checks.zero_shot_quality, Shapeless(model.image_words), "cannot be scored")


# --- the optional pretrained section: skips offline, quickly -------------------------------------

SKIP_SENTENCE = "No network connection here, so the optional pretrained-CLIP section is skipped."


def _pretrained_cell() -> str:
    return _cell("# Optional: a pretrained")


def test_pretrained_section_skips_with_one_sentence_when_offline(offline, capsys):
    check_skips_offline(_pretrained_cell(), SKIP_SENTENCE, "pretrained", capsys)


def test_the_network_probe_gives_up_after_its_timeout(offline, monkeypatch):
    from course_utils.online import network_available

    assert network_available(timeout=0.3) is False

    def hang(*args, **kwargs):  # a DNS lookup that answers long after the probe gave up
        time.sleep(5)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    assert network_available(timeout=0.3) is False
    assert time.perf_counter() - start < 1.5

    class Connection:
        def close(self):
            pass

    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: Connection())
    assert network_available(timeout=0.3) is True


class TinyOpenCLIP(nn.Module):
    """Stands in for open_clip's ViT-B/32: the same interface, a few parameters."""

    def __init__(self):
        super().__init__()
        self.image_proj = nn.Linear(3, 8)
        self.token_embedding = nn.Embedding(49408, 8)

    def encode_image(self, images, normalize=False):
        assert images.shape[-2:] == (224, 224)
        features = self.image_proj(images.mean(dim=(2, 3)))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens, normalize=False):
        features = self.token_embedding(tokens).mean(dim=1)
        return F.normalize(features, dim=-1) if normalize else features


def _cell(start: str) -> str:
    cells = [cell.source for cell in solution_notebook("04_mini_clip").cells
             if cell.cell_type == "code" and cell.source.startswith(start)]
    assert len(cells) == 1, start
    return cells[0]


def test_pretrained_section_runs_where_the_network_is_reachable(solution, monkeypatch, capsys):
    """The Colab path, with the download replaced by a tiny stand-in model."""
    import open_clip

    class Connection:
        def close(self):
            pass

    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: Connection())
    monkeypatch.setattr(open_clip, "create_model_and_transforms",
                        lambda *args, **kwargs: (TinyOpenCLIP(), None, None))
    namespace = dict(solution)
    namespace.update(open_clip=open_clip, bpe=open_clip.get_tokenizer("ViT-B-32"),
                     templates=list(data.PROMPT_TEMPLATES),
                     test_objects=data.ShapesClassification("test", size=24, hold_out=True),
                     compositional=data.ShapesClassification("compositional", size=12))
    exec(compile(_cell("def same_kind_scenes"), "<counting helpers>", "exec"), namespace)
    capsys.readouterr()
    exec(compile(_pretrained_cell(), "<pretrained section>", "exec"), namespace)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "pretrained ViT-B/32, zero-shot on 12 seen pairs",
        "pretrained ViT-B/32, zero-shot on 3 held-out pairs",
        "pretrained ViT-B/32, two vs three"]


# --- CUDA ---------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_zero_shot_classifier_must_move_the_tokens_to_the_model(solution):
    build = solution["build_zero_shot_classifier"]

    def stays_on_cpu(model, classnames, templates, tokenizer):
        return build(model.cpu(), classnames, templates, tokenizer)

    rejects(checks.build_zero_shot_classifier, stays_on_cpu, "on cuda")


@pytest.mark.cuda
def test_text_transformer_mask_must_live_on_the_input_device(solution):
    def forward(self, tokens):
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.pos_embedding[:, :length]
        mask = torch.ones(length, length, dtype=torch.bool).tril()[None, None]  # on the CPU
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        return x[torch.arange(len(tokens), device=tokens.device), (tokens != 0).sum(1) - 1]

    rejects(checks.TextTransformer, _text_variant(solution, forward), "on cuda")


@pytest.mark.cuda
def test_mini_clip_outputs_must_stay_on_the_gpu(solution):
    class Cpu(solution["MiniCLIP"]):
        def forward(self, images, tokens):
            return tuple(x.cpu() for x in super().forward(images, tokens))

    rejects(checks.MiniCLIP, Cpu, "is on cpu, expected cuda")
