"""Checks of notebook 02_vision_transformer: patches as tokens, attention, the ViT.

The exercises, in notebook order, one file each (Dosovitskiy et al. 2021, "An Image is Worth
16x16 Words"; Vaswani et al. 2017):

- ``patchify`` / ``unpatchify``: against ``F.unfold`` / ``F.fold`` with kernel = stride = P;
- ``PatchEmbedding``: against a ``Conv2d`` with kernel = stride = P and the same weights, then
  [CLS] and the position embedding;
- ``scaled_dot_product_attention``: against ``F.scaled_dot_product_attention`` (the weights by
  the formula of Vaswani et al., eq. 1);
- ``MultiHeadSelfAttention``: against ``nn.MultiheadAttention(batch_first=True)`` sharing the
  same ``qkv`` and ``proj`` weights;
- ``TransformerBlock`` and ``VisionTransformer`` (the architecture; ``vit_architecture`` is its
  old name): against pre-norm references built from those torch layers;
- ``vit_quality``: the trained model's accuracy on held-out Shapes images the check renders
  itself (``quality.py``).

Module exercises run through ``runners.run_module``: build the student's module, load the
case's weights into its parameters by the names the exercise's docstring gives them (a misnamed one
raises ``WrongParameters``), run forward, backpropagate a fixed upstream gradient, and compare
the outputs and the gradients of the input and of every parameter.
"""

from __future__ import annotations

from course_utils.checks.runners import WrongParameters
from course_utils.checks.vit.multi_head_self_attention import MultiHeadSelfAttention
from course_utils.checks.vit.patch_embedding import PatchEmbedding
from course_utils.checks.vit.patchify import patchify
from course_utils.checks.vit.quality import QUALITY_IMAGES, vit_quality
from course_utils.checks.vit.scaled_dot_product_attention import scaled_dot_product_attention
from course_utils.checks.vit.transformer_block import TransformerBlock
from course_utils.checks.vit.unpatchify import unpatchify
from course_utils.checks.vit.vision_transformer import VisionTransformer, vit_architecture

__all__ = [
    "QUALITY_IMAGES", "MultiHeadSelfAttention", "PatchEmbedding", "TransformerBlock",
    "VisionTransformer", "WrongParameters", "patchify", "scaled_dot_product_attention",
    "unpatchify", "vit_architecture", "vit_quality",
]
