"""The graded quality of notebook 07's trained captioner (``caption_quality``): how many of its
greedy captions of held-out scenes are entirely true and complete, judged by the Shapes world
itself (``course_utils.data.caption_truth``), with BLEU-4 against the world's own captions
reported beside it."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.checks.case import Case, Outputs
from course_utils.checks.compare import describe
from course_utils.checks.core import QualityCheck
from course_utils.data import ShapesCaptions, build_vocabulary, caption_scenes, caption_truth
from course_utils.metrics import bleu

#: The most tokens a generated caption may have, start and end included (the world's longest
#: caption of three objects has 22 words).
CAPTION_CONTEXT = 24
#: Reference captions per scene for BLEU: the test split's own and three more wordings.
REFERENCES = 4


def decode_captions(tokens: torch.Tensor) -> list[str]:
    """(N, L) token rows [start, w1, ..., end, pad ...] -> the words before the first end or
    padding token, as text (a row without an end token is read to its last column)."""
    vocab, texts = build_vocabulary(), []
    for row in tokens.tolist():
        words = []
        for index in row[1:]:
            if index in (vocab.end_id, vocab.pad_id):
                break
            words.append(vocab.word(index))
        texts.append(" ".join(words))
    return texts


def _caption_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    seed = 1_000 + int(torch.randint(0, 1_000_000, (1,), generator=generator))
    scenes = ShapesCaptions("test", size=1000 if hidden else 500, seed=seed, num_objects=(1, 3),
                            hold_out=False)
    references = [caption_scenes(scenes.scenes, seed=[seed, k]) for k in range(1, REFERENCES)]
    return [Case(f"{len(scenes)} held-out scenes of 1-3 objects (test split, seed {seed})",
                 {"images": scenes.images},
                 private={"scenes": scenes.scenes,
                          "references": [list(r) for r in zip(scenes.captions, *references,
                                                              strict=True)]})]


def _run_captioner(model, case: Case) -> Outputs:
    """Greedy captions (the check's own decoding: only ``model(images, tokens)`` is the
    student's), 250 images at a time on the model's device."""
    parameters = list(model.parameters()) if isinstance(model, nn.Module) else []
    device = parameters[0].device if parameters else torch.device("cpu")
    if isinstance(model, nn.Module):
        model.eval()
    vocab, images, rows = build_vocabulary(), case.inputs["images"], []
    for i in range(0, len(images), 250):
        batch = images[i:i + 250].to(device)
        tokens = torch.full((len(batch), 1), vocab.start_id, dtype=torch.long, device=device)
        ended = torch.zeros(len(batch), dtype=torch.bool, device=device)
        while tokens.shape[1] < CAPTION_CONTEXT and not ended.all():
            logits = model(batch, tokens)
            if type(logits) is not torch.Tensor or logits.ndim != 3 \
                    or logits.shape[:2] != tokens.shape:  # scored (and refused) by _score
                return {"tokens": None, "logits": describe(logits), "given": tuple(tokens.shape)}
            following = logits[:, -1].argmax(dim=-1).masked_fill(ended, vocab.pad_id)  # (B,)
            tokens = torch.cat([tokens, following[:, None]], dim=1)
            ended |= following == vocab.end_id
        rows.append(torch.nn.functional.pad(tokens, (0, CAPTION_CONTEXT - tokens.shape[1])).cpu())
    return {"tokens": torch.cat(rows)}


def _caption_score(case: Case, outputs: Outputs) -> dict[str, float]:
    if outputs["tokens"] is None:
        raise ValueError(f"model(images, tokens {outputs['given']}) must return logits "
                         f"(B, T, V), got {outputs['logits']}")
    texts = decode_captions(outputs["tokens"])
    truths = [caption_truth(text, scene) for text, scene in zip(texts, case.private["scenes"],
                                                                strict=True)]
    n = len(truths)
    return {
        "captions in the grammar": sum(t.parsed for t in truths) / n,
        "captions entirely true": sum(t.true for t in truths) / n,
        "captions naming every object": sum(t.complete for t in truths) / n,
        "BLEU-4": bleu(texts, case.private["references"]),
        "captions entirely true and complete": sum(t.true and t.complete for t in truths) / n,
    }


#: The threshold. On these scenes the notebook's captioner (greedy decoding) writes 89.0 %
#: entirely true and complete captions on the visible seed and 89.1 % on the hidden one (2 CPU
#: cores, 2026-12-07); trained from another initial seed, the same recipe gave 87.4 % on 500
#: other held-out scenes. 80 % (the course's floor) leaves a margin of 7-9 points.
TRUE_AND_COMPLETE_THRESHOLD = 0.80

caption_quality = QualityCheck(
    exercise="captioner quality",
    cases=_caption_cases,
    run=_run_captioner,
    score=_caption_score,
    thresholds={"captions entirely true and complete": TRUE_AND_COMPLETE_THRESHOLD},
    hint="train the captioner with the notebook's settings (the number of scenes and epochs "
         "given); model(images, tokens) must return logits (B, T, V) over the course's "
         "vocabulary, position t predicting token t + 1 (teacher forcing).",
)
