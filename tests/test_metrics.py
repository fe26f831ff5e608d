"""course_utils.metrics.bleu against the paper's own example, hand-computed values and NLTK."""

from __future__ import annotations

import math

import pytest
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu, sentence_bleu

from course_utils import data
from course_utils.metrics import bleu


def test_clipped_unigram_precision_is_the_papers_example():
    # Papineni et al. 2002, §2.1: "the the the the the the the" against "the cat is on the
    # mat" has modified unigram precision 2/7 (and is longer than its reference: no penalty)
    assert bleu(["the the the the the the the"], [["the cat is on the mat"]], max_n=1) \
        == pytest.approx(2 / 7)


def test_counts_are_clipped_by_the_largest_count_in_one_reference():
    assert bleu(["a a a"], [["a b", "a a c"]], max_n=1) == pytest.approx(2 / 3)


def test_short_candidates_pay_the_brevity_penalty():
    score = bleu(["a red circle"], [["a red circle on a dark background"]], max_n=1)
    assert score == pytest.approx(math.exp(1 - 7 / 3))


def test_identical_is_one_and_no_shared_four_gram_is_zero_unless_smoothed():
    text = "a red circle and a blue square"
    assert bleu([text], [[text]]) == pytest.approx(1.0)
    reordered = ["a blue square and a red circle"]
    assert bleu([text], [reordered]) == 0.0
    assert 0.0 < bleu([text], [reordered], smooth=True) < 1.0


def test_a_caption_without_four_grams_adds_none_to_the_corpus_totals():
    # Papineni et al. 2002, §2.1.1: p_n sums clipped counts and n-gram counts over the corpus
    long, short = "a red circle and a blue square", "a red circle"
    assert bleu([long, short], [[long], [short]]) == pytest.approx(1.0)


def test_one_list_of_references_per_candidate():
    with pytest.raises(ValueError, match="one list of references per candidate"):
        bleu(["a red circle", "a blue square"], [["a red circle"]])


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_nltk_on_the_worlds_captions(seed):
    scenes = data.generate_scenes(60, seed=seed, num_objects=(1, 3), hold_out=False)
    # NLTK divides each sentence's n-gram count by at least 1, so a caption shorter than 4
    # words adds a phantom 4-gram to its corpus total; the paper (and sacrebleu) sum the counts
    # themselves. The captions compared here are the ones on which the two definitions agree.
    candidates = data.caption_scenes(scenes, seed=[seed, 9])
    references = [list(r) for r in zip(*[data.caption_scenes(scenes, seed=[seed, k])
                                         for k in range(3)], strict=True)]
    kept = [i for i, c in enumerate(candidates) if len(c.split()) >= 4]
    candidates, references = [candidates[i] for i in kept], [references[i] for i in kept]
    assert len(candidates) >= 30
    split = [[r.split() for r in refs] for refs in references]
    assert bleu(candidates, references) == pytest.approx(
        corpus_bleu(split, [c.split() for c in candidates]))
    smoothing = SmoothingFunction().method2  # Lin & Och 2004: add one for n > 1
    for candidate, refs in zip(candidates[:20], split[:20], strict=True):
        assert bleu([candidate], [[" ".join(r) for r in refs]], smooth=True) == pytest.approx(
            sentence_bleu(refs, candidate.split(), smoothing_function=smoothing))
