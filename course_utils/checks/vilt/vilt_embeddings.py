"""The check of ``ViLTEmbeddings``: ``[CLS, patches, text]`` with position and modality-type
embeddings and the padding mask, against a reference after ViLT (Kim et al. 2021, eq. 1–3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from course_utils.checks.case import Case, Mistake
from course_utils.checks.core import Check
from course_utils.checks.runners import run_module
from course_utils.checks.vilt._tokens import PAD, module_case, random_tokens


class ReferenceViLTEmbeddings(nn.Module):
    """``[CLS, patches, text]`` with position and modality-type embeddings (ViLT eq. 1–3),
    written in parts that the known mistakes below override one at a time."""

    def __init__(self, vocab_size: int, max_text_len: int, image_size: int = 32,
                 patch_size: int = 8, in_channels: int = 3, dim: int = 64, overlap: int = 0):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by {patch_size}")
        self.image_size, self.in_channels = image_size, in_channels
        self.max_text_len = max_text_len
        num_patches = (image_size // patch_size) ** 2
        self.patch_proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size + 2 * overlap,
                                    stride=patch_size, padding=overlap)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.image_pos_embedding = nn.Parameter(torch.zeros(1, 1 + num_patches, dim))
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.text_pos_embedding = nn.Parameter(torch.zeros(1, max_text_len, dim))
        self.type_embedding = nn.Embedding(2, dim)

    def check_inputs(self, images: torch.Tensor, tokens: torch.Tensor) -> None:
        size, channels = self.image_size, self.in_channels
        if images.ndim != 4 or images.shape[1:] != (channels, size, size):
            raise ValueError(f"expected images ({channels}, {size}, {size}) in a batch, "
                             f"got {tuple(images.shape)}")
        if tokens.ndim != 2 or tokens.shape[0] != images.shape[0] or \
                tokens.shape[1] > self.max_text_len:
            raise ValueError("expected tokens (B, L) with L <= max_text_len")

    def image_part(self, images: torch.Tensor) -> torch.Tensor:
        patches = self.patch_proj(images).flatten(2).transpose(1, 2)  # (B, N, D)
        cls = self.cls_token.expand(images.shape[0], -1, -1)  # (B, 1, D)
        return torch.cat([cls, patches], dim=1) + self.image_pos_embedding  # (B, 1 + N, D)

    def text_part(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        return self.token_embedding(tokens) + self.text_pos_embedding[:, :length]  # (B, L, D)

    def padding_mask(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        batch, n_image = tokens.shape[0], self.image_pos_embedding.shape[1]
        image_mask = torch.ones(batch, n_image, dtype=torch.bool, device=tokens.device)
        return torch.cat([image_mask, tokens != PAD], dim=1)  # (B, 1 + N + L)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        self.check_inputs(images, tokens)
        image = self.image_part(images) + self.type_embedding.weight[0]
        text = self.text_part(tokens) + self.type_embedding.weight[1]
        return torch.cat([image, text], dim=1), self.padding_mask(images, tokens)


class _TextFirst(ReferenceViLTEmbeddings):
    def forward(self, images, tokens):
        image = self.image_part(images) + self.type_embedding.weight[0]
        text = self.text_part(tokens) + self.type_embedding.weight[1]
        mask = self.padding_mask(images, tokens)
        n = image.shape[1]
        return torch.cat([text, image], dim=1), torch.cat([mask[:, n:], mask[:, :n]], dim=1)


class _ClsAfterPatches(ReferenceViLTEmbeddings):
    def forward(self, images, tokens):
        x, mask = super().forward(images, tokens)
        n = self.image_pos_embedding.shape[1]
        order = list(range(1, n)) + [0] + list(range(n, x.shape[1]))
        return x[:, order], mask[:, order]


class _ClsAtTheEnd(ReferenceViLTEmbeddings):
    def forward(self, images, tokens):
        x, mask = super().forward(images, tokens)
        return torch.cat([x[:, 1:], x[:, :1]], dim=1), torch.cat([mask[:, 1:], mask[:, :1]], 1)


class _NoTypes(ReferenceViLTEmbeddings):
    def forward(self, images, tokens):
        x = torch.cat([self.image_part(images), self.text_part(tokens)], dim=1)
        return x, self.padding_mask(images, tokens)


class _SameType(ReferenceViLTEmbeddings):
    def forward(self, images, tokens):
        x = torch.cat([self.image_part(images), self.text_part(tokens)], dim=1)
        return x + self.type_embedding.weight[0], self.padding_mask(images, tokens)


class _TypesSwapped(ReferenceViLTEmbeddings):
    def forward(self, images, tokens):
        image = self.image_part(images) + self.type_embedding.weight[1]
        text = self.text_part(tokens) + self.type_embedding.weight[0]
        return torch.cat([image, text], dim=1), self.padding_mask(images, tokens)


class _ClsWithoutTextType(ReferenceViLTEmbeddings):
    """[CLS] given no modality type (only the patches get type 0)."""

    def forward(self, images, tokens):
        x, mask = super().forward(images, tokens)
        return torch.cat([x[:, :1] - self.type_embedding.weight[0], x[:, 1:]], dim=1), mask


class _MaskInverted(ReferenceViLTEmbeddings):
    def forward(self, images, tokens):
        x, mask = super().forward(images, tokens)
        return x, ~mask


class _MaskAllTrue(ReferenceViLTEmbeddings):
    def forward(self, images, tokens):
        x, mask = super().forward(images, tokens)
        return x, torch.ones_like(mask)


class _MaskHidesImage(ReferenceViLTEmbeddings):
    def forward(self, images, tokens):
        x, mask = super().forward(images, tokens)
        n = self.image_pos_embedding.shape[1]
        return x, torch.cat([torch.zeros_like(mask[:, :n]), mask[:, n:]], dim=1)


class _NoTextPositions(ReferenceViLTEmbeddings):
    def text_part(self, tokens):
        return self.token_embedding(tokens)


class _ClsWithoutPosition(ReferenceViLTEmbeddings):
    def image_part(self, images):
        patches = self.patch_proj(images).flatten(2).transpose(1, 2)  # (B, N, D)
        patches = patches + self.image_pos_embedding[:, 1:]
        cls = self.cls_token.expand(images.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1)


class _ColumnMajorPatches(ReferenceViLTEmbeddings):
    def image_part(self, images):
        patches = self.patch_proj(images).transpose(2, 3).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(images.shape[0], -1, -1)
        return torch.cat([cls, patches], dim=1) + self.image_pos_embedding


CLS_FIRST = ("[CLS] must be the very first token: the sequence is [CLS, patches, text] "
             "(cat the [CLS] in front of the patches, then the text after them).")

EMBEDDING_MISTAKES = [
    Mistake(CLS_FIRST, _TextFirst),
    Mistake(CLS_FIRST, _ClsAfterPatches),
    Mistake(CLS_FIRST, _ClsAtTheEnd),
    Mistake("no modality-type embedding: add type_embedding.weight[0] to [CLS] and the "
            "patches and type_embedding.weight[1] to the text, so that the transformer can "
            "tell a word from a patch (ViLT eq. 3).", _NoTypes),
    Mistake("both parts got the same modality type: the image ([CLS] and patches) takes "
            "row 0 of type_embedding, the text row 1.", _SameType),
    Mistake("the modality types are swapped: row 0 of type_embedding is the image ([CLS] and "
            "patches), row 1 the text.", _TypesSwapped),
    Mistake("[CLS] belongs to the image part: it gets the image's type embedding (row 0) "
            "like the patches.", _ClsWithoutTextType),
    Mistake("the mask is inverted: True means 'may be attended' (real tokens), False only "
            "at padding (token id 0).", _MaskInverted),
    Mistake("the mask must hide the padding: False where tokens == 0 (pad), True everywhere "
            "else.", _MaskAllTrue),
    Mistake("the mask hides the image: [CLS] and every patch are real tokens (True); only "
            "text padding is False.", _MaskHidesImage),
    Mistake("the text has no position embeddings: add text_pos_embedding[:, :L] to the word "
            "embeddings (word order matters: 'left of' vs 'right of').", _NoTextPositions),
    Mistake("[CLS] needs its position embedding too: image_pos_embedding has 1 + N rows, "
            "row 0 for [CLS]; add it after concatenating [CLS] and the patches.",
            _ClsWithoutPosition),
    Mistake("the patches are in column-major order: flatten the (B, D, H/P, W/P) grid row by "
            "row, .flatten(2).transpose(1, 2), as in notebook 02.", _ColumnMajorPatches),
]


def _embedding_case(name: str, generator: torch.Generator, *, batch: int, image_size: int,
                    patch_size: int, channels: int, dim: int, vocab_size: int, max_len: int,
                    length: int, dtype: torch.dtype = torch.float32,
                    lengths: Sequence[int] | None = None, raises=None,
                    images_size: int | None = None) -> Case:
    """``images_size`` (default ``image_size``): the size of the images it is given."""
    init = {"vocab_size": vocab_size, "max_text_len": max_len, "image_size": image_size,
            "patch_size": patch_size, "in_channels": channels, "dim": dim}
    size = images_size or image_size
    images = torch.rand(batch, channels, size, size, generator=generator,
                        dtype=torch.float64).to(dtype)
    tokens = random_tokens(generator, batch, length, vocab_size, lengths)
    return module_case(name, generator, ReferenceViLTEmbeddings, init,
                       {"images": images, "tokens": tokens}, dtype, raises)


def _embedding_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    small = dict(vocab_size=11, dim=8, channels=3)
    cases = [
        _embedding_case("batch 3, 8×8 images in 4×4 patches, texts of 2–6 tokens padded to 6",
                        generator, batch=3, image_size=8, patch_size=4, max_len=6, length=6,
                        lengths=[6, 2, 4], **small),
        _embedding_case("batch 1, 12×12 image in 4×4 patches, 4 tokens of at most 7, no padding",
                        generator, batch=1, image_size=12, patch_size=4, max_len=7, length=4,
                        lengths=[4], **small),
        _embedding_case("float64, batch 2, 6×6 images in 3×3 patches", generator, batch=2,
                        image_size=6, patch_size=3, max_len=5, length=5, lengths=[5, 3],
                        dtype=torch.float64, **small),
        _embedding_case("tokens longer than max_text_len, which it must refuse", generator,
                        batch=2, image_size=8, patch_size=4, max_len=4, length=6,
                        raises=ValueError, **small),
        _embedding_case("images of the wrong size (8×8 for image_size 12), which it must refuse",
                        generator, batch=2, image_size=12, patch_size=4, max_len=4, length=4,
                        images_size=8, raises=ValueError, **small),
    ]
    if hidden:
        cases += [
            _embedding_case("one-channel 16×16 images in 8×8 patches, a text that is only "
                            "<start> <end>", generator, batch=2, image_size=16, patch_size=8,
                            max_len=8, length=8, lengths=[2, 8], vocab_size=13, dim=6,
                            channels=1),
            _embedding_case("batch 4, 32×32 images in 8×8 patches, width 16", generator,
                            batch=4, image_size=32, patch_size=8, max_len=12, length=10,
                            vocab_size=53, dim=16, channels=3),
        ]
    return cases


ViLTEmbeddings = Check(
    exercise="ViLTEmbeddings",
    reference=ReferenceViLTEmbeddings,
    cases=_embedding_cases,
    run=run_module,
    mistakes=EMBEDDING_MISTAKES,
)
