"""Quality figures a notebook reports, readable by people and by the benchmark command."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence

#: MIME type of the machine-readable copy of a metric in a notebook's outputs.
METRIC_MIMETYPE = "application/vnd.course-utils.metric+json"

#: Set (to any non-empty value) in a kernel's environment by ``python -m course_utils bench``:
#: report_metric then also leaves a machine-readable copy of each figure in the outputs.
BENCH_VARIABLE = "COURSE_BENCH"


def format_metric(value: float, unit: str = "") -> str:
    """``value`` as people read it: fractions with unit ``"%"`` as percentages (0.97 → 97.0 %)."""
    if unit == "%":
        return f"{100 * value:.1f} %"
    return f"{value:.4g}{' ' + unit if unit else ''}"


def report_metric(name: str, value: float, unit: str = "") -> None:
    """Show a quality figure, e.g. ``report_metric("held-out accuracy", 0.97, "%")``.

    Prints one line, ``held-out accuracy: 97.0 %``, and nothing else. Under
    ``python -m course_utils bench`` (COURSE_BENCH set in the kernel's environment) the same
    line is a display output that also carries ``{"name", "value", "unit"}`` under
    METRIC_MIMETYPE, which the command reads back from the executed notebook: people see the
    same text either way, and notebooks saved outside the benchmark carry no unusual output.
    """
    value = float(value)
    text = f"{name}: {format_metric(value, unit)}"
    if os.environ.get(BENCH_VARIABLE) and _in_ipython():
        from IPython.display import display

        figure = {"name": name, "value": value, "unit": unit}
        display({"text/plain": text, METRIC_MIMETYPE: figure}, raw=True)
    else:
        print(text)


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def bleu(candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4,
         smooth: bool = False) -> float:
    """Corpus BLEU of whitespace-tokenised texts (Papineni et al. 2002), a fraction in [0, 1].

    Args:
        candidates: N generated texts.
        references: N lists of reference texts, ``references[i]`` for ``candidates[i]``.
        max_n: the longest n-gram counted (BLEU-4: 4).
        smooth: add one to every n-gram count and total for n > 1 (Lin & Och 2004), so that
            one short sentence with no matching 4-gram does not score exactly 0; for scoring a
            single caption. The corpus score is unsmoothed.

    1. For every n, each candidate n-gram counts as matched at most as often as it occurs in
       one reference ("clipped" counts, §2.1); the precision p_n is matched / total n-grams,
       summed over the corpus.
    2. Brevity penalty (§2.2.2): c = the candidates' total length, r = the sum of each
       candidate's closest reference length; BP = 1 if c > r else exp(1 - r / c).
    3. BLEU = BP · exp(mean over n of log p_n), 0 if any p_n is 0.

    NLTK's ``corpus_bleu`` gives the same score (tested), except that NLTK
    counts at least one n-gram per sentence, so a caption shorter than n words lowers its p_n.
    """
    if len(candidates) != len(references):
        raise ValueError(f"expected one list of references per candidate, got "
                         f"{len(candidates)} candidates and {len(references)} reference lists")
    matched, total = [0] * max_n, [0] * max_n
    length, closest = 0, 0
    for candidate, refs in zip(candidates, references, strict=True):
        words = candidate.split()
        ref_words = [reference.split() for reference in refs]
        length += len(words)
        closest += min((len(r) for r in ref_words), key=lambda r: (abs(r - len(words)), r),
                       default=0)
        for n in range(1, max_n + 1):
            grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
            most = Counter()  # each n-gram's largest count in one reference
            for r in ref_words:
                most |= Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            matched[n - 1] += sum(min(count, most[gram]) for gram, count in grams.items())
            total[n - 1] += sum(grams.values())
    extra = [0] + [int(smooth)] * (max_n - 1)
    precisions = [(m + e) / (t + e) if t + e else 0.0
                  for m, t, e in zip(matched, total, extra, strict=True)]
    if min(precisions) == 0 or length == 0:
        return 0.0
    brevity = 1.0 if length > closest else math.exp(1 - closest / length)
    return brevity * math.exp(sum(math.log(p) for p in precisions) / max_n)
