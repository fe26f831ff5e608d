"""Checks of notebook 03_similarity_contrastive: similarity and contrastive losses.

The exercises, in notebook order, one file each:

- ``cosine_similarity`` against ``F.cosine_similarity``;
- ``similarity_matrix`` against ``F.cosine_similarity`` of every pair;
- ``triplet_loss`` against ``F.triplet_margin_loss``;
- ``batch_hard_triplet_loss`` (Hermans et al. 2017) against a brute-force loop over anchors;
- ``clip_loss`` against ``open_clip.loss.ClipLoss``.

Each reference is refused while the student's code runs; ``F.cross_entropy`` stays allowed for
``clip_loss``, since that is how the field writes it.
"""

from __future__ import annotations

from course_utils.checks.contrastive.batch_hard_triplet_loss import batch_hard_triplet_loss
from course_utils.checks.contrastive.clip_loss import clip_loss
from course_utils.checks.contrastive.cosine_similarity import cosine_similarity
from course_utils.checks.contrastive.similarity_matrix import similarity_matrix
from course_utils.checks.contrastive.triplet_loss import FLOAT64_TRIPLET, triplet_loss

__all__ = ["FLOAT64_TRIPLET", "batch_hard_triplet_loss", "clip_loss", "cosine_similarity",
           "similarity_matrix", "triplet_loss"]
