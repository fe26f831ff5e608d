"""Reference building blocks that later notebooks import, so each notebook stands alone.

They are the library versions of earlier exercises (notebook 02's ViT, notebook 04's text
encoder), written with torch's fast kernels. An exercise's check refuses them while the
student's code runs; a few checks build their references on them (04's text encoder).
"""

from course_utils.blocks.transformer import (
    Attention,
    PatchEmbedding,
    TextTransformer,
    TransformerBlock,
    VisionTransformer,
    sincos_position_embedding,
)

__all__ = ["Attention", "PatchEmbedding", "TextTransformer", "TransformerBlock",
           "VisionTransformer", "sincos_position_embedding"]
