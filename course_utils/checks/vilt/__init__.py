"""Checks of notebook 05_vilt_vqa: ViLT, one transformer for image and text.

No library in the course's environment ships ViLT, so the references are written after the
paper (Kim, Son & Kim, *ViLT: Vision-and-Language Transformer Without Convolution or Region
Supervision*, ICML 2021) and the authors' code (github.com/dandelin/ViLT: ``vilt/modules/
heads.py``), with the course's one difference: a single [CLS] token in front of the image, so
that the sequence reads ``[CLS, patches, text]``.

The exercises, in notebook order, one file each:

- ``ViLTEmbeddings`` (``vilt_embeddings.py``), ``ViLT`` (``vilt.py``): modules, built with the
  case's arguments, given the case's weights by parameter name (``runners.run_module``), run
  forward, and compared with the reference on the outputs and on the gradients of the inputs
  and of every parameter.
- ``mask_tokens`` (``mask_tokens.py``), ``make_itm_batch`` (``make_itm_batch.py``): random
  procedures, which cannot be compared value by value with a reference (any correct use of the
  generator is right), so their checks (``StochasticCheck``) run them many times with seeded
  generators and judge the draws on the trusted side: invariants that must hold in every draw,
  frequencies that must be close to their probabilities, and reproducibility.
- ``ITMHead``, ``MLMHead``, ``VQAHead`` (``itm_head.py``, ``mlm_head.py``, ``vqa_head.py``):
  the heads, modules like the first two.
- ``vqa_accuracy`` (``quality.py``) grades a trained VQA model on held-out questions it
  generates itself; ``vqa_report`` scores any other model on them, grading nothing.
"""

from course_utils.checks.vilt._tokens import END, MASK, PAD, SPECIALS, START, UNK
from course_utils.checks.vilt.itm_head import ITMHead, ReferenceITMHead
from course_utils.checks.vilt.make_itm_batch import make_itm_batch, reference_make_itm_batch
from course_utils.checks.vilt.mask_tokens import mask_tokens, reference_mask_tokens
from course_utils.checks.vilt.mlm_head import MLMHead, ReferenceMLMHead
from course_utils.checks.vilt.quality import (
    COUNT_THRESHOLD,
    VQA_CONTEXT,
    tokenize_questions,
    vqa_accuracy,
    vqa_report,
)
from course_utils.checks.vilt.vilt import ReferenceViLT, ViLT
from course_utils.checks.vilt.vilt_embeddings import ReferenceViLTEmbeddings, ViLTEmbeddings
from course_utils.checks.vilt.vqa_head import ReferenceVQAHead, VQAHead

__all__ = [
    # the checks, in notebook order
    "ViLTEmbeddings", "ViLT", "mask_tokens", "make_itm_batch", "ITMHead", "MLMHead", "VQAHead",
    "vqa_accuracy", "vqa_report",
    # their references
    "ReferenceViLTEmbeddings", "ReferenceViLT", "reference_mask_tokens",
    "reference_make_itm_batch", "ReferenceITMHead", "ReferenceMLMHead", "ReferenceVQAHead",
    # constants and helpers
    "PAD", "START", "END", "UNK", "MASK", "SPECIALS", "VQA_CONTEXT", "COUNT_THRESHOLD",
    "tokenize_questions",
]
