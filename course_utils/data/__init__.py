"""The Shapes world: scenes, images, captions, questions, a vocabulary and Datasets.

    from course_utils.data import generate_scenes, render_scenes, caption_scenes
    scenes = generate_scenes(8, seed=0)            # list[Scene]
    images = render_scenes(scenes, image_size=32)  # uint8 (8, 32, 32, 3)
    captions = caption_scenes(scenes, seed=0)      # ["a red circle left of a blue square", ...]

Everything is generated on the machine from a seed, in seconds; nothing is downloaded.
See data/README.md for how the world is made.
"""

from .caption_truth import CaptionTruth, Claim, ParsedCaption, caption_truth, parse_caption
from .captions import (
    CAPTION_TEMPLATES,
    PROMPT_TEMPLATES,
    caption_scene,
    caption_scenes,
    caption_words,
    class_prompts,
)
from .datasets import ShapesCaptions, ShapesClassification, ShapesVQA, images_to_tensor
from .photos import load_sample_photo
from .questions import (
    ANSWERS,
    QUESTION_TYPES,
    Question,
    answer_index,
    make_question,
    question_words,
)
from .render import render_scene, render_scenes
from .scenes import (
    MAX_OBJECTS,
    SPLITS,
    allowed_pairs,
    generate_scenes,
    generate_single_object_scenes,
    iter_scenes,
)
from .vocab import SPECIAL_TOKENS, Vocabulary, build_vocabulary
from .world import (
    CLASSES,
    COLOUR_RGB,
    COLOURS,
    COMPOSITIONAL_PAIRS,
    COUNT_WORDS,
    RELATION_MARGIN,
    RELATIONS,
    SHAPES,
    SIZE_RADIUS,
    SIZES,
    Scene,
    ShapeObject,
    class_index,
    class_name,
    relation_holds,
    relation_is_clear,
)

__all__ = [
    "ANSWERS",
    "CAPTION_TEMPLATES",
    "CLASSES",
    "COLOURS",
    "COLOUR_RGB",
    "COMPOSITIONAL_PAIRS",
    "COUNT_WORDS",
    "MAX_OBJECTS",
    "PROMPT_TEMPLATES",
    "QUESTION_TYPES",
    "RELATIONS",
    "RELATION_MARGIN",
    "SHAPES",
    "SIZES",
    "SIZE_RADIUS",
    "SPECIAL_TOKENS",
    "SPLITS",
    "CaptionTruth",
    "Claim",
    "ParsedCaption",
    "Question",
    "Scene",
    "ShapeObject",
    "ShapesCaptions",
    "ShapesClassification",
    "ShapesVQA",
    "Vocabulary",
    "allowed_pairs",
    "answer_index",
    "build_vocabulary",
    "caption_scene",
    "caption_scenes",
    "caption_truth",
    "caption_words",
    "class_index",
    "class_name",
    "class_prompts",
    "generate_scenes",
    "generate_single_object_scenes",
    "images_to_tensor",
    "iter_scenes",
    "load_sample_photo",
    "make_question",
    "parse_caption",
    "question_words",
    "relation_holds",
    "relation_is_clear",
    "render_scene",
    "render_scenes",
]
