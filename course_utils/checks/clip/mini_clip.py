"""Check of ``MiniCLIP(image_encoder, text_encoder, image_width, text_width, embed_dim)``,
against a reference written after open_clip's ``CLIP`` (Radford et al. 2021)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.blocks import transformer as blocks
from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.clip._inputs import fixed_seed, parameters_of, random_tokens
from course_utils.checks.compare import describe
from course_utils.checks.core import Check
from course_utils.checks.runners import (
    PARAM,
    WrongParameters,
    backpropagate,
    clone_inputs,
    load_parameters,
    random_parameters,
)

#: ln(1/0.07): CLIP's initial logit scale (Radford et al. 2021, §2.5; Wu et al. 2018).
INIT_LOGIT_SCALE = math.log(1 / 0.07)
#: CLIP clips the logit scale at 100 (Radford et al. 2021, §2.5).
MAX_LOGIT_SCALE = math.log(100)


class ReferenceMiniCLIP(nn.Module):
    """open_clip's ``CLIP`` in miniature (Radford et al. 2021, Figure 3)."""

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, image_width: int,
                 text_width: int, embed_dim: int):
        super().__init__()
        self.visual = image_encoder
        self.text = text_encoder
        self.image_projection = nn.Parameter(torch.randn(image_width, embed_dim)
                                             * image_width ** -0.5)
        self.text_projection = nn.Parameter(torch.randn(text_width, embed_dim)
                                            * text_width ** -0.5)
        self.logit_scale = nn.Parameter(torch.ones([]) * INIT_LOGIT_SCALE)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.visual(images) @ self.image_projection  # (B, E)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        features = self.text(tokens) @ self.text_projection  # (B, E)
        return F.normalize(features, dim=-1) if normalize else features

    def forward(self, images: torch.Tensor, tokens: torch.Tensor):
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        return self.encode_image(images), self.encode_text(tokens), scale


class _MiniCLIPVariant(nn.Module):
    """The reference with switches and its own code (the mistakes must not run the reference,
    which is refused while a student's code runs, so that they can stand in for one)."""

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, image_width: int,
                 text_width: int, embed_dim: int, normalize: bool = True,
                 init: float = INIT_LOGIT_SCALE, exp: bool = True, clamp: bool = True,
                 project_after_normalize: bool = False):
        super().__init__()
        self.visual, self.text = image_encoder, text_encoder
        self.image_projection = nn.Parameter(torch.zeros(image_width, embed_dim))
        self.text_projection = nn.Parameter(torch.zeros(text_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(init)))
        self.normalize, self.exp, self.clamp = normalize, exp, clamp
        self.project_after_normalize = project_after_normalize

    def _encode(self, features, projection, normalize):
        if self.project_after_normalize:
            return F.normalize(features, dim=-1) @ projection
        features = features @ projection
        return F.normalize(features, dim=-1) if normalize and self.normalize else features

    def encode_image(self, images, normalize=True):
        return self._encode(self.visual(images), self.image_projection, normalize)

    def encode_text(self, tokens, normalize=True):
        return self._encode(self.text(tokens), self.text_projection, normalize)

    def forward(self, images, tokens):
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE) if self.clamp else self.logit_scale
        return self.encode_image(images), self.encode_text(tokens), \
            scale.exp() if self.exp else scale


def _clip_mistake(**switches) -> Callable:
    return functools.partial(_MiniCLIPVariant, **switches)


#: The sizes a case carries: the encoders' and the constructor's.
CLIP_SIZES = ("image_size", "patch_size", "image_width", "text_width", "embed_dim",
              "vocab_size", "context_length")


def reference_encoders(sizes: dict) -> tuple[nn.Module, nn.Module]:
    """The reference image and text encoders of a case (one block each, two heads)."""
    with fixed_seed():
        visual = blocks.VisionTransformer(sizes["image_size"], sizes["patch_size"], 3,
                                          sizes["image_width"], depth=1, num_heads=2,
                                          num_classes=0)
        text = blocks.TextTransformer(sizes["vocab_size"], sizes["context_length"],
                                      sizes["text_width"], depth=1, num_heads=2)
    return visual, text


def build_model(implementation: Callable, sizes: dict) -> nn.Module:
    """``implementation(visual, text, image_width, text_width, embed_dim)`` around the
    reference encoders, built under a fixed seed."""
    encoders = reference_encoders(sizes)
    with fixed_seed():
        return implementation(*encoders, sizes["image_width"], sizes["text_width"],
                              sizes["embed_dim"])


def _build_clip(implementation: Callable, case: Case) -> tuple[nn.Module, Outputs]:
    """The model of a case, built by ``implementation`` around the reference encoders, its
    initial logit scale read, then loaded with the case's weights, on the case's device."""
    weights = parameters_of(case.inputs)
    model = build_model(implementation, {k: case.inputs[k] for k in CLIP_SIZES})
    scale = getattr(model, "logit_scale", None)
    if not isinstance(scale, nn.Parameter):
        raise WrongParameters(f"logit_scale must be an nn.Parameter holding ln(1/τ), a number "
                              f"the model learns; got {describe(scale)}")
    initial = {
        "logit_scale at initialisation": float(scale.detach().double().reshape(-1)[0]),
        "logit_scale is a learnable nn.Parameter of the model": isinstance(
            scale, nn.Parameter) and scale.requires_grad and any(
            p is scale for p in model.parameters()),
    }
    model.to(device=case.inputs["images"].device, dtype=next(iter(weights.values())).dtype)
    load_parameters(model, weights)
    return model, initial


def _run_clip(implementation: Callable, case: Case) -> Outputs:
    """The initial logit scale, the four encodings (no gradients), and forward's three
    outputs with the gradients of the parameters ``case.grad`` names."""
    model, outputs = _build_clip(implementation, case)
    inputs = clone_inputs(case)
    images, tokens = inputs["images"], inputs["tokens"]
    with torch.no_grad():
        outputs["encode_image(images)"] = model.encode_image(images)
        outputs["encode_image(images, normalize=False)"] = model.encode_image(
            images, normalize=False)
        outputs["encode_text(tokens, normalize=True)"] = model.encode_text(
            tokens, normalize=True)
        outputs["encode_text(tokens, normalize=False)"] = model.encode_text(
            tokens, normalize=False)
    result = model(images, tokens)
    if not isinstance(result, tuple | list) or len(result) != 3:
        raise TypeError("forward(images, tokens) should return a tuple (image_features, "
                        "text_features, logit_scale.exp())")
    forward = {"forward(...)[0], the image features": result[0],
               "forward(...)[1], the text features": result[1],
               "forward(...)[2], the logit scale exp(logit_scale)": result[2]}
    outputs |= forward
    return outputs | backpropagate(forward, dict(model.named_parameters()), case,
                                   images.device)


def _clip_case(generator: torch.Generator, name: str, batch: int = 4, text_batch=None,
               image_size: int = 8, patch_size: int = 4, image_width: int = 16,
               text_width: int = 12, embed_dim: int = 10, vocab_size: int = 11,
               context_length: int = 6, logit_scale: float | None = None,
               dtype: torch.dtype = torch.float32) -> Case:
    sizes = dict(zip(CLIP_SIZES, (image_size, patch_size, image_width, text_width, embed_dim,
                                  vocab_size, context_length), strict=True))
    weights = random_parameters(build_model(ReferenceMiniCLIP, sizes), generator, dtype)
    if logit_scale is not None:
        weights[PARAM + "logit_scale"] = torch.tensor(logit_scale, dtype=dtype)
    images = torch.rand(batch, 3, image_size, image_size, generator=generator, dtype=dtype)
    tokens = random_tokens(generator, text_batch or batch, context_length, vocab_size)
    return Case(name, {**sizes, "images": images, "tokens": tokens, **weights},
                grad=("image_projection", "text_projection", "logit_scale",
                      "visual.patch_embed.proj.weight"))


def _clip_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    cases = [
        _clip_case(generator, "4 images and 4 captions, widths 16 and 12, embedding 10"),
        _clip_case(generator, "batch 1", batch=1),
        _clip_case(generator, "a logit scale above ln(100), where it is clamped",
                   logit_scale=5.0),
        _clip_case(generator, "float64", batch=3, dtype=torch.float64),
    ]
    if hidden:
        cases += [
            _clip_case(generator, "3 images, 5 captions, embedding wider than the encoders",
                       batch=3, text_batch=5, image_width=8, text_width=6, embed_dim=20),
            _clip_case(generator, "12×12 images in 3×3 patches, logit scale ln(100) exactly",
                       image_size=12, patch_size=3, logit_scale=MAX_LOGIT_SCALE),
            _clip_case(generator, "float64, a logit scale far above the clamp", batch=2,
                       logit_scale=7.5, dtype=torch.float64),
        ]
    return cases


MiniCLIP = Check(
    exercise="MiniCLIP",
    reference=ReferenceMiniCLIP,
    cases=_clip_cases,
    run=_run_clip,
    mistakes=[
        Mistake("logit_scale stores ln(1/τ), not τ: initialise it to ln(1/0.07) ≈ 2.659 "
                "(CLIP's temperature τ = 0.07), not to 0.07.", _clip_mistake(init=0.07)),
        Mistake("logit_scale stores the logarithm ln(1/τ) ≈ 2.659, not 1/τ ≈ 14.3: "
                "forward returns its exp().", _clip_mistake(init=1 / 0.07)),
        Mistake("the embeddings must be L2-normalised (F.normalize(x, dim=-1)) after the "
                "projection when normalize=True, so that their dot products are cosine "
                "similarities.", _clip_mistake(normalize=False)),
        Mistake("project first, then normalise: features @ projection, then F.normalize; "
                "normalising before the projection leaves the embeddings off the unit sphere.",
                _clip_mistake(project_after_normalize=True)),
        Mistake("forward returns the scale exp(logit_scale), the factor that multiplies the "
                "cosine similarities, not logit_scale itself.", _clip_mistake(exp=False)),
        Mistake("clamp logit_scale at ln(100) before exp() (CLIP clips the scale at 100).",
                _clip_mistake(clamp=False)),
    ],
)
