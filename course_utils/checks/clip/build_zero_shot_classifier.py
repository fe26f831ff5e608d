"""Check of ``build_zero_shot_classifier(model, classnames, templates, tokenizer)``, against
open_clip's ``build_zero_shot_classifier`` (its code refused while the student's runs) with the
same model, tokenizer, class names and templates."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.clip._inputs import parameters_of
from course_utils.checks.clip.mini_clip import CLIP_SIZES, ReferenceMiniCLIP, build_model
from course_utils.checks.clip.tokenize import reference_tokenize
from course_utils.checks.core import Check
from course_utils.checks.forbid import Forbidden
from course_utils.checks.runners import expect_raise, load_parameters, random_parameters
from course_utils.data import CLASSES, PROMPT_TEMPLATES, build_vocabulary

# --- build_zero_shot_classifier(model, classnames, templates, tokenizer) -> (E, K) ----------


def reference_build_zero_shot_classifier(model: nn.Module, classnames: Sequence[str],
                                         templates: Sequence[str],
                                         tokenizer: Callable) -> torch.Tensor:
    """open_clip's ``build_zero_shot_classifier`` (note its argument order) on the model's
    device."""
    from open_clip import zero_shot_classifier

    if len(classnames) == 0 or len(templates) == 0:
        raise ValueError("expected at least one class name and one template")
    device = next(model.parameters()).device
    return zero_shot_classifier.build_zero_shot_classifier(
        model, tokenizer, list(classnames), list(templates), num_classes_per_batch=10,
        device=device)


def _run_zero_shot(implementation: Callable, case: Case) -> Outputs:
    """The reference MiniCLIP with the case's weights, in eval mode on the case's device, and
    the reference tokenizer, handed to ``implementation`` with the class names and templates."""
    weights = parameters_of(case.inputs)
    sizes = {k: case.inputs[k] for k in CLIP_SIZES}
    model = build_model(ReferenceMiniCLIP, sizes)
    model.to(device=case.inputs["device_marker"].device,
             dtype=next(iter(weights.values())).dtype)
    load_parameters(model, weights)
    model.eval()
    tokenizer = functools.partial(reference_tokenize, vocab=build_vocabulary(),
                                  context_length=sizes["context_length"])
    classnames, templates = list(case.inputs["classnames"]), list(case.inputs["templates"])

    def classifier() -> torch.Tensor:
        return implementation(model, classnames, templates, tokenizer)

    if case.raises is not None:
        return expect_raise(classifier, case)
    return {"output": classifier()}


def _zero_shot_case(generator: torch.Generator, name: str, classnames: Sequence[str],
                    templates: Sequence[str], embed_dim: int = 8,
                    dtype: torch.dtype = torch.float32, raises=None) -> Case:
    vocab_size = len(build_vocabulary())
    sizes = dict(zip(CLIP_SIZES, (8, 4, 8, 16, embed_dim, vocab_size, 12), strict=True))
    weights = random_parameters(build_model(ReferenceMiniCLIP, sizes), generator, dtype)
    return Case(name, {**sizes, "classnames": list(classnames), "templates": list(templates),
                       "device_marker": torch.zeros(1), **weights}, raises=raises)


def _zero_shot_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    prompts = list(PROMPT_TEMPLATES)
    cases = [
        _zero_shot_case(generator, "3 classes, 2 templates, embedding 8",
                        ["red circle", "blue square", "green triangle"],
                        ["a {}", "a photo of a {}"]),
        _zero_shot_case(generator, "the 15 classes and the 8 prompt templates (batches of "
                        "10 classes in open_clip), embedding 12", CLASSES, prompts,
                        embed_dim=12),
        _zero_shot_case(generator, "1 class, 1 template", ["yellow circle"], ["there is a {}"]),
        _zero_shot_case(generator, "float64, 4 classes, 3 templates",
                        CLASSES[4:8], prompts[2:5], dtype=torch.float64),
        _zero_shot_case(generator, "no templates, which it must refuse", CLASSES[:2], [],
                        raises=ValueError),
    ]
    if hidden:
        cases += [
            _zero_shot_case(generator, "as many classes as embedding dimensions (5)",
                            CLASSES[5:10], prompts[:4], embed_dim=5),
            _zero_shot_case(generator, "12 classes, 3 templates, words outside the "
                            "vocabulary", [f"{c} zebra" for c in CLASSES[:12]],
                            ["a {}", "{} on a dark background", "a drawing of two {}"],
                            embed_dim=7),
            _zero_shot_case(generator, "no classes, which it must refuse", [], prompts,
                            raises=ValueError),
        ]
    return cases


def _zero_shot_mistake(normalize_each=True, renormalize=True, transpose=True,
                       group="class") -> Callable:
    def build(model, classnames, templates, tokenizer):
        device = next(model.parameters()).device
        if group == "class":
            texts = [t.format(c) for c in classnames for t in templates]
        else:
            texts = [t.format(c) for t in templates for c in classnames]
        with torch.no_grad():
            features = model.encode_text(tokenizer(texts).to(device), normalize=normalize_each)
            features = features.reshape(len(classnames), len(templates), -1)  # (K, T, E)
            means = features.mean(dim=1)  # (K, E)
            if renormalize:
                means = F.normalize(means, dim=-1)
        return means.T if transpose else means

    return build


build_zero_shot_classifier = Check(
    exercise="build_zero_shot_classifier",
    reference=reference_build_zero_shot_classifier,
    cases=_zero_shot_cases,
    run=_run_zero_shot,
    mistakes=[
        Mistake("the classifier is (E, num_classes): one column per class, so that "
                "image_features @ classifier gives the logits (transpose the (K, E) means).",
                _zero_shot_mistake(transpose=False)),
        Mistake("re-normalise each class embedding after averaging over the templates: a "
                "mean of unit vectors is shorter than 1.", _zero_shot_mistake(renormalize=False)),
        Mistake("normalise each prompt's embedding before averaging "
                "(model.encode_text(tokens, normalize=True)), so that every template counts "
                "the same.", _zero_shot_mistake(normalize_each=False)),
        Mistake("the prompts are grouped by template, not by class: make the texts class by "
                "class ([t.format(c) for c in classnames for t in templates]) before the "
                "reshape to (K, T, E).", _zero_shot_mistake(group="template")),
    ],
    forbidden=Forbidden(
        code=["open_clip.zero_shot_classifier.build_zero_shot_classifier",
              "open_clip.zero_shot_classifier.build_zero_shot_classifier_legacy"],
        allowed="Fill in the templates, encode, average and normalise yourself.",
    ),
)
