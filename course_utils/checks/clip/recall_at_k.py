"""Check of ``recall_at_k(image_features, text_features, k)``, against a brute-force count, pair
by pair; ``recall_figures`` is the vectorised version the retrieval quality check uses."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check

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
