"""Torch Datasets of the Shapes world, precomputed in memory.

Every dataset renders all of its items when it is built (10,000 items take about a
second) and exposes them as tensors, so a training loop can index them directly
(`ds.images[idx]`, `ds.labels[idx]`) instead of going through a DataLoader:

    ShapesClassification  images (N, 3, H, W) float32 in [0, 1], labels (N,) long
    ShapesCaptions        images, captions list[str], labels (N,) long (-1 if > 1 object)
    ShapesVQA             images, questions list[str], answers (N,) long (ANSWERS index),
                          question_types list[str]

All keep their `scenes` (list[Scene]) for inspection. The same (split, size, seed, ...)
always gives the same data; each split and each use (scenes, captions, questions)
draws from its own random stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .captions import caption_scenes
from .questions import ANSWERS, QUESTION_TYPES, answer_index, make_question
from .render import render_scenes
from .scenes import (
    MAX_OBJECTS,
    SPLITS,
    allowed_pairs,
    generate_scenes,
    generate_single_object_scenes,
    iter_scenes,
    split_rng,
)
from .world import CLASSES, COLOURS, SHAPES, SIZES

_STREAM_CAPTIONS, _STREAM_QUESTIONS = 2, 3
_MAX_SCENES_PER_QUESTION = 1000  # scenes tried for one question before giving up


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W, 3) -> float32 tensor (N, 3, H, W) in [0, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    x = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, 3, H, W)
    return x.float().div_(255.0).contiguous()


def _check_size(size: int) -> int:
    if int(size) != size or size < 0:
        raise ValueError(f"size must be a non-negative integer, got {size}")
    return int(size)


class ShapesClassification(Dataset):
    """One-object scenes labelled by class (colour_index * 3 + shape_index).

    Exactly class-balanced over the split's allowed classes (12 with hold_out, 15
    without, the 3 held-out ones for "compositional"), give or take one item per class
    when size is not a multiple of their number. Labels always index the 15 CLASSES.

    Attributes: images float32 (N, 3, H, W) in [0, 1]; labels long (N,); scenes;
    classes (the 15 CLASSES); present_classes (sorted label values the split uses).
    Item: (image (3, H, W), label ()).
    """

    classes = CLASSES

    def __init__(
        self,
        split: str = "train",
        size: int = 3000,
        seed: int = 0,
        image_size: int = 32,
        hold_out: bool = True,
        sizes: Sequence[str] = SIZES,
    ) -> None:
        self.split = split
        self.scenes = generate_single_object_scenes(_check_size(size), seed, split, sizes, hold_out)
        self.images = images_to_tensor(render_scenes(self.scenes, image_size))
        self.labels = torch.tensor([s.objects[0].label for s in self.scenes], dtype=torch.long)
        self.present_classes = sorted(
            COLOURS.index(c) * len(SHAPES) + SHAPES.index(s)
            for c, s in allowed_pairs(split, hold_out)
        )

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class ShapesCaptions(Dataset):
    """Scenes of num_objects objects, each with one random true caption.

    Attributes: images float32 (N, 3, H, W) in [0, 1]; captions list[str]; scenes;
    labels long (N,): the class of a one-object scene, -1 for a scene of several.
    Item: (image (3, H, W), caption str).
    """

    classes = CLASSES

    def __init__(
        self,
        split: str = "train",
        size: int = 3000,
        seed: int = 0,
        image_size: int = 32,
        num_objects: int | tuple[int, int] = (1, MAX_OBJECTS),
        hold_out: bool = True,
        sizes: Sequence[str] = SIZES,
    ) -> None:
        self.split = split
        self.scenes = generate_scenes(_check_size(size), seed, split, num_objects, sizes, hold_out)
        self.images = images_to_tensor(render_scenes(self.scenes, image_size))
        self.captions = caption_scenes(self.scenes, [seed, SPLITS.index(split), _STREAM_CAPTIONS])
        self.labels = torch.tensor(
            [s.objects[0].label if len(s) == 1 else -1 for s in self.scenes], dtype=torch.long
        )

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return self.images[index], self.captions[index]


class ShapesVQA(Dataset):
    """Scenes with one question each, the question types exactly balanced.

    Item i asks a question of type QUESTION_TYPES[i % 5]; a scene about which that type
    cannot be asked unambiguously is skipped for the next one. Questions in "train" and
    "test" (with hold_out) never name a held-out colour-shape pair.

    Attributes: images float32 (N, 3, H, W) in [0, 1]; questions list[str]; answers long
    (N,) (indices into ANSWERS); question_types list[str]; scenes; answer_names (ANSWERS);
    named_objects list[tuple[ShapeObject, ...]] (Question.objects: the objects a relation,
    colour or shape question singles out, in the order it names them).
    Item: (image (3, H, W), question str, answer ()).
    """

    answer_names = ANSWERS
    question_type_names = QUESTION_TYPES

    def __init__(
        self,
        split: str = "train",
        size: int = 3000,
        seed: int = 0,
        image_size: int = 32,
        num_objects: int | tuple[int, int] = (1, MAX_OBJECTS),
        hold_out: bool = True,
        sizes: Sequence[str] = SIZES,
    ) -> None:
        size = _check_size(size)
        scenes = iter_scenes(seed, split, num_objects, sizes, hold_out)
        # questions name only pairs the split's scenes may hold: none held out in train/test
        pairs = None if split == "compositional" else allowed_pairs(split, hold_out)
        rng = split_rng(seed, split, _STREAM_QUESTIONS)
        self.split = split
        self.scenes, self.questions, self.question_types, answers = [], [], [], []
        self.named_objects = []
        for i in range(size):
            qtype = QUESTION_TYPES[i % len(QUESTION_TYPES)]
            for _ in range(_MAX_SCENES_PER_QUESTION):
                scene = next(scenes)
                question = make_question(scene, qtype, rng, pairs)
                if question is not None:
                    break
            else:
                raise ValueError(
                    f"could not ask a {qtype!r} question about any of "
                    f"{_MAX_SCENES_PER_QUESTION} scenes with num_objects={num_objects}"
                )
            self.scenes.append(scene)
            self.questions.append(question.question)
            self.question_types.append(qtype)
            self.named_objects.append(question.objects)
            answers.append(answer_index(question.answer))
        self.images = images_to_tensor(render_scenes(self.scenes, image_size))
        self.answers = torch.tensor(answers, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, torch.Tensor]:
        return self.images[index], self.questions[index], self.answers[index]
