"""The checks of notebook 03 accept its solution and reject the plausible wrong answers."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from course_utils.checks import CheckFailure
from course_utils.checks import contrastive as checks
from course_utils.checks.contrastive.batch_hard_triplet_loss import _reference_batch_hard
from course_utils.checks.contrastive.clip_loss import _reference_clip_loss
from tests.notebook_code import load_solution

solution = load_solution("03_similarity_contrastive")

NAMES = ["cosine_similarity", "similarity_matrix", "triplet_loss", "batch_hard_triplet_loss",
         "clip_loss"]


@pytest.mark.parametrize("name", NAMES)
def test_accepts_the_solution_quietly(name, capsys):
    check = getattr(checks, name)
    check(solution[name])
    check(solution[name], seed=2026, hidden=True)
    captured = capsys.readouterr()
    assert captured.err == ""
    assert f"✓ {name}:" in captured.out


@pytest.mark.parametrize("name", NAMES)
def test_rejects_each_known_mistake_with_its_hint(name):
    check = getattr(checks, name)
    assert len(check.mistakes) >= 4
    for mistake in check.mistakes:
        with pytest.raises(CheckFailure) as failure:
            check(mistake.implementation, hidden=True)
        assert mistake.hint in str(failure.value), mistake.hint


@pytest.mark.parametrize("name", NAMES)
def test_the_visible_cases_alone_catch_every_mistake(name):
    check = getattr(checks, name)
    for mistake in check.mistakes:
        with pytest.raises(CheckFailure):
            check(mistake.implementation)


@pytest.mark.parametrize("name", NAMES)
def test_blank_exercise_says_not_implemented(name):
    def blank(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailure, match="not implemented yet"):
        getattr(checks, name)(blank)


# --- other right answers must pass too (the tolerances are not tuned to one implementation) ---


def cosine_via_product_clamp_of_broadcast(a, b, dim=-1, eps=1e-8):
    torch.broadcast_shapes(a.shape, b.shape)  # RuntimeError -> caught below
    a, b = torch.broadcast_tensors(a, b)
    return (a * b).sum(dim) / (a.norm(dim=dim).clamp_min(eps) * b.norm(dim=dim).clamp_min(eps))


def cosine_with_value_error(a, b, dim=-1, eps=1e-8):
    try:
        return cosine_via_product_clamp_of_broadcast(a, b, dim, eps)
    except RuntimeError as error:
        raise ValueError(str(error)) from None


def similarity_via_normalize(a, b):
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError("expected (N, D) and (M, D)")
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def similarity_via_own_cosine(a, b):
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError("expected (N, D) and (M, D)")
    return solution["cosine_similarity"](a[:, None, :], b[None, :, :])


def triplet_via_pairwise_distance(anchor, positive, negative, margin=1.0):
    if anchor.ndim != 2 or positive.shape != anchor.shape or negative.shape != anchor.shape:
        raise ValueError("expected three (B, D)")
    d_pos = F.pairwise_distance(anchor, positive)
    d_neg = F.pairwise_distance(anchor, negative)
    return torch.relu(d_pos - d_neg + margin).mean()


def batch_hard_via_cdist(embeddings, labels, margin=0.2):
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError("expected (B, D) and (B,)")
    distances = torch.cdist(embeddings, embeddings)  # (B, B)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & ~eye, ~same
    valid = positive.any(1) & negative.any(1)
    if not valid.any():
        return embeddings.new_zeros(())
    hardest_positive = torch.where(positive, distances, 0.0).amax(1)
    hardest_negative = torch.where(negative, distances, math.inf).amin(1)
    return F.relu(hardest_positive - hardest_negative + margin)[valid].mean()


def batch_hard_with_loops(embeddings, labels, margin=0.2):
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError("expected (B, D) and (B,)")
    losses = []
    for a in range(len(labels)):
        d = (embeddings - embeddings[a]).norm(dim=1)  # (B,)
        positive = (labels == labels[a]) & (torch.arange(len(labels)) != a).to(labels.device)
        negative = labels != labels[a]
        if positive.any() and negative.any():
            losses.append(F.relu(d[positive].max() - d[negative].min() + margin))
    return torch.stack(losses).mean() if losses else embeddings.new_zeros(())


def clip_via_log_softmax(image_features, text_features, logit_scale):
    if image_features.ndim != 2 or image_features.shape != text_features.shape:
        raise ValueError("expected two (N, D) of one shape")
    logits = logit_scale * image_features @ text_features.T
    image_to_text = -logits.log_softmax(dim=1).diagonal().mean()
    text_to_image = -logits.log_softmax(dim=0).diagonal().mean()
    return (image_to_text + text_to_image) / 2


def clip_via_einsum(image_features, text_features, logit_scale):
    if image_features.ndim != 2 or image_features.shape != text_features.shape:
        raise ValueError("expected two (N, D) of one shape")
    logits = torch.einsum("nd,md->nm", image_features, text_features) * logit_scale
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * F.cross_entropy(logits, labels) + 0.5 * F.cross_entropy(logits.t(), labels)


ALTERNATIVES = {
    "cosine_similarity": [cosine_with_value_error],
    "similarity_matrix": [similarity_via_normalize, similarity_via_own_cosine],
    "triplet_loss": [triplet_via_pairwise_distance],
    "batch_hard_triplet_loss": [batch_hard_via_cdist, batch_hard_with_loops],
    "clip_loss": [clip_via_log_softmax, clip_via_einsum],
}


@pytest.mark.parametrize("name, alternative",
                         [(n, a) for n, alts in ALTERNATIVES.items() for a in alts],
                         ids=lambda x: getattr(x, "__name__", x))
def test_accepts_other_right_answers(name, alternative):
    check = getattr(checks, name)
    check(alternative)
    check(alternative, seed=2026, hidden=True)


# --- wrong answers beyond the listed mistakes ---------------------------------------------------

cos = solution["cosine_similarity"]
sim = solution["similarity_matrix"]
tri = solution["triplet_loss"]
hard = solution["batch_hard_triplet_loss"]
clip = solution["clip_loss"]


def cosine_with_normalize(a, b, dim=-1, eps=1e-8):
    return (F.normalize(a, dim=dim, eps=eps) * F.normalize(b, dim=dim, eps=eps)).sum(dim)


from open_clip.loss import ClipLoss as ImportedClipLoss  # noqa: E402 (a student's early import)

EARLY_LOSS = ImportedClipLoss()  # made before the check runs


def _fixed_sign_clip(i, t, s):
    return -clip(i, t, s)


def _float32_zero(embeddings, labels, margin=0.2):
    """Right, except that "no valid anchor" gives torch.tensor(0.0): float32, on the CPU."""
    loss = hard(embeddings, labels, margin)  # raises the ValueErrors
    counts = torch.bincount(labels)
    has_both = (counts[labels] > 1) & (counts[labels] < len(labels))
    return loss if has_both.any() else torch.tensor(0.0)


def _batch_all(embeddings, labels, margin):
    """The mean over every valid triplet: the "batch all" variant, not batch hard."""
    losses = []
    for a in range(len(labels)):
        for p in range(len(labels)):
            for n in range(len(labels)):
                if p != a and labels[p] == labels[a] and labels[n] != labels[a]:
                    losses.append(F.relu((embeddings[a] - embeddings[p]).norm()
                                         - (embeddings[a] - embeddings[n]).norm() + margin))
    return torch.stack(losses).mean() if losses else embeddings.new_zeros(())


WRONG = {
    "cosine_similarity": {
        "calls F.cosine_similarity": (lambda a, b, dim=-1, eps=1e-8: F.cosine_similarity(
            a, b, dim=dim, eps=eps), "builds from scratch"),
        "calls torch.cosine_similarity": (lambda a, b, dim=-1, eps=1e-8: torch.cosine_similarity(
            a, b, dim=dim, eps=eps), "builds from scratch"),
        "uses nn.CosineSimilarity": (lambda a, b, dim=-1, eps=1e-8: torch.nn.CosineSimilarity(
            dim, eps)(a, b), "builds from scratch"),
        "calls F.normalize": (cosine_with_normalize, "builds from scratch"),
        "detached": (lambda a, b, dim=-1, eps=1e-8: cos(a, b, dim, eps).detach(),
                     "no gradient reached"),
        "always float32": (lambda a, b, dim=-1, eps=1e-8: cos(a, b, dim, eps).float(),
                           "dtype torch.float32"),
        "wrong device": (lambda a, b, dim=-1, eps=1e-8: cos(a, b, dim, eps).to("meta"),
                         "is on meta"),
        "keeps the reduced axis": (lambda a, b, dim=-1, eps=1e-8: cos(a, b, dim, eps)
                                   .unsqueeze(dim), "has shape"),
        "RuntimeError, not ValueError": (cosine_via_product_clamp_of_broadcast,
                                         "your code raised RuntimeError"),
    },
    "similarity_matrix": {
        "calls F.cosine_similarity": (lambda a, b: F.cosine_similarity(a[:, None], b[None], -1),
                                      "builds from scratch"),
        "detached": (lambda a, b: sim(a, b).detach(), "no gradient reached"),
        "wrong device": (lambda a, b: sim(a, b).to("meta"), "is on meta"),
        "always float32": (lambda a, b: sim(a, b).float(), "dtype torch.float32"),
        "a NumPy array": (lambda a, b: sim(a, b).detach().numpy(), "should be a torch.Tensor"),
        "no ValueError": (lambda a, b: F.normalize(a.reshape(-1, a.shape[-1]), dim=-1)
                          @ F.normalize(b.reshape(-1, a.shape[-1]), dim=-1).T
                          if a.shape[-1] == b.shape[-1] else sim(a, b),
                          "expected it to raise ValueError"),
    },
    "triplet_loss": {
        "calls F.triplet_margin_loss": (lambda a, p, n, margin=1.0: F.triplet_margin_loss(
            a, p, n, margin=margin), "builds from scratch"),
        "uses nn.TripletMarginLoss": (lambda a, p, n, margin=1.0: torch.nn.TripletMarginLoss(
            margin=margin)(a, p, n), "builds from scratch"),
        "detached": (lambda a, p, n, margin=1.0: tri(a, p, n, margin).detach(),
                     "no gradient reached"),
        "a Python float": (lambda a, p, n, margin=1.0: tri(a, p, n, margin).item(),
                           "should be a torch.Tensor"),
        "per-triplet losses": (lambda a, p, n, margin=1.0: (
            (a - p).norm(dim=1) - (a - n).norm(dim=1) + margin).clamp_min(0), "has shape"),
        "wrong device": (lambda a, p, n, margin=1.0: tri(a, p, n, margin).to("meta"),
                         "is on meta"),
        "L1 distances": (lambda a, p, n, margin=1.0: (
            (a - p).abs().sum(1) - (a - n).abs().sum(1) + margin).clamp_min(0).mean(),
            "wrong values"),
    },
    "batch_hard_triplet_loss": {
        "detached": (lambda e, y, margin=0.2: hard(e, y, margin).detach(),
                     "no gradient reached"),
        "wrong device": (lambda e, y, margin=0.2: hard(e, y, margin).to("meta"), "is on meta"),
        "always float32": (lambda e, y, margin=0.2: hard(e, y, margin).float(),
                           "dtype torch.float32"),
        "a zero on the CPU in float32": (_float32_zero, "dtype torch.float32"),
        "shape (1,)": (lambda e, y, margin=0.2: hard(e, y, margin).reshape(1), "has shape (1,)"),
        "batch all (every valid triplet)": (
            lambda e, y, margin=0.2: _batch_all(e, y, margin), "wrong values"),
        "no ValueError": (lambda e, y, margin=0.2: hard(e[:len(y)], y[:len(e)], margin)
                          if e.ndim == 2 else hard(e[None], y[:1], margin),
                          "expected it to raise ValueError"),
    },
    "clip_loss": {
        "calls open_clip.loss.ClipLoss": (lambda i, t, s: __import__("open_clip").loss.ClipLoss()(
            i, t, s), "builds from scratch"),
        "calls open_clip.ClipLoss": (lambda i, t, s: __import__("open_clip").ClipLoss()(i, t, s),
                                     "builds from scratch"),
        "an alias imported before the check": (lambda i, t, s: ImportedClipLoss()(i, t, s),
                                               "builds from scratch"),
        "an instance made before the check": (lambda i, t, s: EARLY_LOSS(i, t, s),
                                              "builds from scratch"),
        "only get_logits from open_clip": (lambda i, t, s: F.cross_entropy(
            EARLY_LOSS.get_logits(i, t, s)[0], torch.arange(len(i), device=i.device)),
            "builds from scratch"),
        "detached": (lambda i, t, s: clip(i, t, s).detach(), "no gradient reached"),
        "detached logit_scale": (lambda i, t, s: clip(i, t, s.detach() if torch.is_tensor(s)
                                                      else s), "no gradient reached"),
        "wrong device": (lambda i, t, s: clip(i, t, s).to("meta"), "is on meta"),
        "a negative loss": (_fixed_sign_clip, "wrong values"),
        "no ValueError": (lambda i, t, s: clip(i[:len(t)], t[:len(i)], s)
                          if i.shape[1] == t.shape[1] else clip(i, t[:, :i.shape[1]], s),
                          "expected it to raise ValueError"),
    },
}


@pytest.mark.parametrize("name, wrong", [(n, w) for n in WRONG for w in WRONG[n]])
def test_rejects_other_wrong_answers(name, wrong):
    implementation, reason = WRONG[name][wrong]
    with pytest.raises(CheckFailure, match=re.escape(reason)):
        getattr(checks, name)(implementation, hidden=True)


def test_a_forbidden_call_is_refused_even_when_the_error_is_swallowed():
    def sneaky(i, t, s):
        try:
            EARLY_LOSS(i, t, s)
        except Exception:
            pass
        return clip(i, t, s)

    with pytest.raises(CheckFailure, match="it called open_clip.loss.ClipLoss.forward"):
        checks.clip_loss(sneaky)


def test_forbidden_objects_work_again_after_the_checks():
    with pytest.raises(CheckFailure):
        checks.clip_loss(WRONG["clip_loss"]["an alias imported before the check"][0])
    with pytest.raises(CheckFailure):
        checks.cosine_similarity(cosine_with_normalize)
    i = F.normalize(torch.randn(4, 3), dim=1)
    t = F.normalize(torch.randn(4, 3), dim=1)
    torch.testing.assert_close(ImportedClipLoss()(i, t, 10.0), clip(i, t, 10.0))
    torch.testing.assert_close(F.normalize(i, dim=1), i)


def test_zero_vectors_get_similarity_zero_not_nan():
    # the contract the notebook states, on the solution, and the NaN hint for a missing clamp
    a = torch.zeros(2, 3)
    b = torch.randn(2, 3)
    assert torch.equal(cos(a, b), torch.zeros(2))
    assert torch.equal(sim(a, b), torch.zeros(2, 2))
    with pytest.raises(CheckFailure) as failure:
        checks.cosine_similarity(lambda a, b, dim=-1, eps=1e-8: (a * b).sum(dim) / (
            a.norm(dim=dim) * b.norm(dim=dim)))
    assert "NaN" in str(failure.value) and "clamp each norm" in str(failure.value)


def test_the_references_agree_with_the_libraries_and_the_brute_force_loop():
    # the brute-force reference of batch hard against an independent vectorised version
    generator = torch.Generator().manual_seed(7)
    embeddings = torch.randn(15, 4, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 4, 5, 6, 6])
    for margin in (0.0, 0.2, 1.0):
        torch.testing.assert_close(_reference_batch_hard(embeddings, labels, margin),
                                   batch_hard_via_cdist(embeddings, labels, margin))
    # clip_loss by hand: two pairs, scale 2
    i = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = 2 * i @ i.T
    expected = -logits.log_softmax(1).diagonal().mean()
    torch.testing.assert_close(_reference_clip_loss(i, i, 2.0), expected)


def test_every_case_of_each_check_is_distinct_and_named():
    generator = torch.Generator().manual_seed(0)
    for name in NAMES:
        cases = getattr(checks, name).cases(generator, True)
        names = [case.name for case in cases]
        assert len(names) == len(set(names)), name
        assert any(case.raises is ValueError for case in cases), f"{name}: no bad-shape case"
        assert any(case.grad for case in cases), f"{name}: no gradient case"
        assert any(torch.is_tensor(v) and v.dtype == torch.float64
                   for case in cases for v in case.inputs.values()), f"{name}: no float64 case"


@pytest.mark.cuda
@pytest.mark.parametrize("name", NAMES)
def test_runs_on_cuda_and_wants_cuda_outputs(name, capsys):
    check = getattr(checks, name)
    check(solution[name], hidden=True)
    assert "on cpu and cuda" in capsys.readouterr().out
    with pytest.raises(CheckFailure, match="is on cpu, expected cuda"):
        check(lambda *args, **kwargs: solution[name](*args, **kwargs).cpu())
