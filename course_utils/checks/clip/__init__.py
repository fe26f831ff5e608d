"""Checks of notebook 04_mini_clip: a mini CLIP (Radford et al. 2021), graded against open_clip.

The exercises, in notebook order, one file each:

- ``tokenize(captions, vocab, context_length)`` (``tokenize.py``): against a word-level
  version of open_clip's ``SimpleTokenizer.__call__`` (start token, ids, end token, zero
  padding, truncation that keeps the end token), written out here.
- ``TextTransformer(vocab_size, context_length, dim, depth, num_heads)``
  (``text_transformer.py``): against ``course_utils.blocks.TextTransformer`` given the same
  weights (its code is refused while the student's runs, however it was imported).
- ``MiniCLIP(image_encoder, text_encoder, image_width, text_width, embed_dim)``
  (``mini_clip.py``): against a reference written after open_clip's ``CLIP``
  (``encode_image``/``encode_text`` with ``normalize``, ``logit_scale`` = ln(1/0.07),
  ``forward`` -> features and ``logit_scale.exp()``).
- ``build_zero_shot_classifier(model, classnames, templates, tokenizer)``
  (``build_zero_shot_classifier.py``): against
  ``open_clip.zero_shot_classifier.build_zero_shot_classifier`` (its code refused while the
  student's runs) with the same model, tokenizer, class names and templates.
- ``zero_shot_quality(model)`` (``quality.py``): a graded threshold on the trained model's
  zero-shot accuracy, on held-out Shapes-world images the check generates itself.
- ``recall_at_k(image_features, text_features, k)`` (``recall_at_k.py``): against a
  brute-force count, pair by pair.
- ``retrieval_quality(model)`` (``quality.py``): graded thresholds on the trained model's
  Recall@5 in both directions, on held-out image–caption pairs.
- ``count_swap(caption)`` (``count_swap.py``): against a word-by-word rewrite of a
  Shapes-world caption, every count word moved to the next count (two -> three -> four ->
  two), None for a caption without one.

Every case is data (tensors, numbers, strings, lists of strings): the modules are built from
the case's sizes and loaded with its weights (``param:NAME`` entries, ``runners``), so that
the student's step can run in another process. The common mistakes are written with their own
code, never the reference's (which is refused while a student's code runs), so that tests can
hand them to a check as if a student had written them. ``_inputs.py`` holds what several
checks share (seeds, token ids, a case's weights).
"""

from course_utils.checks.clip.build_zero_shot_classifier import (
    build_zero_shot_classifier,
    reference_build_zero_shot_classifier,
)
from course_utils.checks.clip.count_swap import SWAP_COUNTS, count_swap, reference_count_swap
from course_utils.checks.clip.mini_clip import (
    CLIP_SIZES,
    INIT_LOGIT_SCALE,
    MAX_LOGIT_SCALE,
    MiniCLIP,
    ReferenceMiniCLIP,
)
from course_utils.checks.clip.quality import (
    COMPOSITIONAL,
    GALLERY,
    ZERO_SHOT,
    retrieval_quality,
    zero_shot_quality,
)
from course_utils.checks.clip.recall_at_k import (
    recall_at_k,
    recall_figures,
    reference_recall_at_k,
)
from course_utils.checks.clip.text_transformer import (
    TEXT_SIZES,
    ReferenceTextTransformer,
    TextTransformer,
)
from course_utils.checks.clip.tokenize import reference_tokenize, tokenize

__all__ = [
    # the checks, in notebook order
    "tokenize", "TextTransformer", "MiniCLIP", "build_zero_shot_classifier",
    "zero_shot_quality", "recall_at_k", "retrieval_quality", "count_swap",
    # their references
    "reference_tokenize", "ReferenceTextTransformer", "ReferenceMiniCLIP",
    "reference_build_zero_shot_classifier", "reference_recall_at_k", "recall_figures",
    "reference_count_swap",
    # constants
    "CLIP_SIZES", "COMPOSITIONAL", "GALLERY", "INIT_LOGIT_SCALE", "MAX_LOGIT_SCALE",
    "SWAP_COUNTS", "TEXT_SIZES", "ZERO_SHOT",
]
