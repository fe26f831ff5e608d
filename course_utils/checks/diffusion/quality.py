"""The graded quality check of notebook 06: text-to-image samples of the trained model, each
named by the Shapes-world judge (``judge.judge_images``) and scored against its prompt's class.
"""

from __future__ import annotations

import torch

from course_utils.checks.case import Case, Outputs
from course_utils.checks.core import QualityCheck
from course_utils.checks.diffusion.judge import judge_images
from course_utils.checks.forbid import Forbidden

#: A sample counts when the judge names the prompt's class and the object explains all but
#: this fraction of the image's deviation from the background (real images: about 0.04).
MAX_UNEXPLAINED = 0.5


def _prompt_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    from course_utils.data import CLASSES, PROMPT_TEMPLATES

    per_class = 6
    prompts, labels = [], []
    for label, name in enumerate(CLASSES):
        for _ in range(per_class):
            template = PROMPT_TEMPLATES[int(torch.randint(len(PROMPT_TEMPLATES), (1,),
                                                          generator=generator))]
            prompts.append(template.format(name) if hidden else f"a {name}")
            labels.append(label)
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    return [Case(f"{len(prompts)} prompts, {per_class} for each of the 15 classes",
                 {"prompts": tuple(prompts), "seed": seed},
                 private={"labels": torch.tensor(labels)})]


def _run_generate(generate, case: Case) -> Outputs:
    return {"output": generate(list(case.inputs["prompts"]), case.inputs["seed"])}


def _score(case: Case, outputs: Outputs) -> dict[str, float]:
    images = outputs["output"]
    labels = case.private["labels"]
    if type(images) is not torch.Tensor or len(images) != len(labels):
        raise ValueError(f"expected a tensor of {len(labels)} images (one per prompt), got "
                         f"{images!r:.80}")
    classes, unexplained = judge_images(images)
    right = (classes == labels) & (unexplained <= MAX_UNEXPLAINED)
    return {
        "samples judged the prompt's class": float(right.double().mean()),
        "samples of the prompt's colour": float((classes // 3 == labels // 3).double().mean()),
        "samples of the prompt's shape": float((classes % 3 == labels % 3).double().mean()),
    }


text_to_image = QualityCheck(
    exercise="text-to-image samples",
    cases=_prompt_cases,
    run=_run_generate,
    score=_score,
    thresholds={"samples judged the prompt's class": 0.80},
    hint="train the denoiser as the notebook does (all its steps, conditioning dropout on), "
         "sample with a guidance scale above 1, and return images in [0, 1]. A judge that "
         "renders every Shapes-world object names each sample's class.",
    forbidden=Forbidden(code=["course_utils.data.render"],
                        allowed="Generate them with your diffusion model and sample()."),
)
