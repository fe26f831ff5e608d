"""The checks of notebook 05 accept its solution and reject the plausible wrong answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import data
from course_utils.checks import CheckFailure
from course_utils.checks import vilt as checks
from tests.notebook_code import load_solution

solution = load_solution("05_vilt_vqa")

EXERCISES = {
    "ViLTEmbeddings": "ViLTEmbeddings", "ViLT": "ViLT", "mask_tokens": "mask_tokens",
    "make_itm_batch": "make_itm_batch", "ITMHead": "ITMHead", "MLMHead": "MLMHead",
    "VQAHead": "VQAHead",
}


@pytest.mark.parametrize("name", EXERCISES)
def test_accepts_the_solution_quietly(name, capfd):
    check = getattr(checks, name)
    check(solution[EXERCISES[name]])
    check(solution[EXERCISES[name]], seed=2026, hidden=True)
    check(solution[EXERCISES[name]], seed=7, hidden=True)  # another seed: no flaky draws
    assert capfd.readouterr().err == ""


MISTAKES = [(name, i) for name in EXERCISES for i in range(len(getattr(checks, name).mistakes))]


@pytest.mark.parametrize("name, index", MISTAKES)
def test_rejects_each_known_mistake_with_its_hint(name, index):
    check = getattr(checks, name)
    mistake = check.mistakes[index]
    with pytest.raises(CheckFailure) as failure:
        check(mistake.implementation, hidden=True)
    assert mistake.hint in str(failure.value), str(failure.value)


def test_every_known_mistake_of_the_exercises_is_recognised():
    hints = {name: " ".join(m.hint for m in getattr(checks, name).mistakes) for name in EXERCISES}
    assert "special tokens" in hints["mask_tokens"]  # specials masked
    assert "wherever nothing was masked" in hints["mask_tokens"]  # labels everywhere
    assert "probability is inverted" in hints["mask_tokens"]
    assert "labels are inverted" in hints["make_itm_batch"]
    assert "[CLS] must be the very first token" in hints["ViLTEmbeddings"]
    assert "no modality-type embedding" in hints["ViLTEmbeddings"]
    assert len(checks.ViLTEmbeddings.mistakes) >= 8 and len(checks.mask_tokens.mistakes) >= 5


# --- further wrong answers -------------------------------------------------------------------

Embeddings, ViLT = solution["ViLTEmbeddings"], solution["ViLT"]
ITMHead, MLMHead, VQAHead = solution["ITMHead"], solution["MLMHead"], solution["VQAHead"]
mask_tokens, make_itm_batch = solution["mask_tokens"], solution["make_itm_batch"]


def subclass(base, forward):
    return type(f"Wrong{base.__name__}", (base,), {"forward": forward})


class Renamed(Embeddings):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.modality_embedding = self.type_embedding
        del self.type_embedding

    def forward(self, images, tokens):
        self.type_embedding = self.modality_embedding
        return super().forward(images, tokens)


class TorchEncoder(nn.Module):
    """A ViLT built on torch's own encoder layer (forbidden)."""

    def __init__(self, vocab_size, max_text_len, image_size=32, patch_size=8, in_channels=3,
                 dim=64, depth=4, num_heads=4, mlp_ratio=4.0, overlap=0):
        super().__init__()
        self.embeddings = Embeddings(vocab_size, max_text_len, image_size, patch_size,
                                     in_channels, dim, overlap)
        self.blocks = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(dim, num_heads, int(dim * mlp_ratio), 0.0,
                                       batch_first=True, norm_first=True), depth)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images, tokens):
        x, mask = self.embeddings(images, tokens)
        return self.norm(self.blocks(x, src_key_padding_mask=~mask))


def _mask_float_labels(ids, mask_id, p, specials, generator=None):
    masked, labels = mask_tokens(ids, mask_id, p, specials, generator)
    return masked, labels.float()


def _itm_bool_labels(images, tokens, generator=None):
    images, tokens, labels = make_itm_batch(images, tokens, generator)
    return images, tokens, labels.bool()


def _itm_swaps_both(images, tokens, generator=None):
    """Swaps image and text together: still a true pair, but labelled 0."""
    out_images, _, labels = make_itm_batch(images, tokens, generator)
    index = torch.arange(len(images), device=images.device)
    other = torch.where(labels == 0, (index + 1) % len(images), index)
    return images[other], tokens[other], labels


def _itm_new_image(images, tokens, generator=None):
    out_images, out_tokens, labels = make_itm_batch(images, tokens, generator)
    noise = torch.rand(out_images.shape, generator=generator, device=images.device,
                       dtype=images.dtype)
    return torch.where(labels[:, None, None, None] == 0, noise, out_images), out_tokens, labels


WRONG = {
    "ViLTEmbeddings": {
        "float64 output": (subclass(Embeddings, lambda self, i, t: (
            Embeddings.forward(self, i, t)[0].double(), Embeddings.forward(self, i, t)[1])),
            "dtype torch.float64"),
        "on the wrong device": (subclass(Embeddings, lambda self, i, t: tuple(
            v.to("meta") for v in Embeddings.forward(self, i, t))), "is on meta"),
        "detached": (subclass(Embeddings, lambda self, i, t: (
            Embeddings.forward(self, i, t)[0].detach(), Embeddings.forward(self, i, t)[1])),
            "no gradient reached"),
        "mask as 0/1 integers": (subclass(Embeddings, lambda self, i, t: (
            Embeddings.forward(self, i, t)[0], Embeddings.forward(self, i, t)[1].long())),
            "dtype torch.int64"),
        "parameters renamed": (Renamed, "names the exercise's docstring gives, so that the "
                                        "check can load the same weights into yours and into "
                                        "the reference; missing: type_embedding.weight"),
        "accepts long texts": (subclass(Embeddings, lambda self, i, t: Embeddings.forward(
            self, i, t[:, :self.max_text_len])), "expected it to raise ValueError"),
    },
    "ViLT": {
        "detached": (subclass(ViLT, lambda self, i, t: ViLT.forward(self, i, t).detach()),
                     "no gradient reached"),
        "on the wrong device": (subclass(ViLT, lambda self, i, t: ViLT.forward(self, i, t).to(
            "meta")), "is on meta"),
        "torch's encoder layer": (TorchEncoder, "which this exercise builds from scratch"),
    },
    "mask_tokens": {
        "float labels": (_mask_float_labels, "dtype torch.float32"),
        "one value": (lambda ids, m, p, s, generator=None: mask_tokens(ids, m, p, s, generator)
                      [0], "fewer values"),
        "on the wrong device": (lambda ids, m, p, s, generator=None: tuple(
            v.to("meta") for v in mask_tokens(ids, m, p, s, generator)), "is on meta"),
        "no ValueError": (lambda ids, m, p, s, generator=None: mask_tokens(
            ids.long(), m, min(max(p, 0.0), 1.0), s, generator), "expected it to raise"),
    },
    "make_itm_batch": {
        "bool labels": (_itm_bool_labels, "dtype torch.bool"),
        "swaps image and text together": (_itm_swaps_both, "labelled 0"),
        "a new image, not one of the batch": (_itm_new_image, "not one of the batch's images"),
        "on the wrong device": (lambda i, t, generator=None: tuple(
            v.to("meta") for v in make_itm_batch(i, t, generator)), "is on meta"),
    },
    "ITMHead": {
        "detached": (subclass(ITMHead, lambda self, x: ITMHead.forward(self, x).detach()),
                     "no gradient reached"),
        "one logit": (subclass(ITMHead, lambda self, x: ITMHead.forward(self, x)[:, 1:]),
                      "has shape"),
    },
    "MLMHead": {
        "float64 output": (subclass(MLMHead, lambda self, x: MLMHead.forward(self, x).double()),
                           "dtype torch.float64"),
        "no ValueError": (subclass(MLMHead, lambda self, x: self.decoder(
            self.norm(torch.nn.functional.gelu(self.dense(x))))), "raised RuntimeError"),
    },
    "VQAHead": {
        "on the wrong device": (subclass(VQAHead, lambda self, x: VQAHead.forward(self, x).to(
            "meta")), "is on meta"),
        "reads [CLS] of a sequence": (subclass(VQAHead, lambda self, x: VQAHead.forward(
            self, x[..., :1, :].squeeze(-2) if x.ndim == 3 else x)[:1].expand(len(x), -1)),
            "wrong values"),
    },
}


@pytest.mark.parametrize("name, wrong", [(n, w) for n in WRONG for w in WRONG[n]])
def test_rejects_other_wrong_answers(name, wrong):
    implementation, reason = WRONG[name][wrong]
    with pytest.raises(CheckFailure) as failure:
        getattr(checks, name)(implementation, hidden=True)
    assert reason in str(failure.value), str(failure.value)


def misnamed(base: type[nn.Module], old: str, new: str) -> type[nn.Module]:
    """``base`` with its submodule ``old`` registered as ``new``: right in every value, wrong in
    the names of that submodule's parameters (its forward still finds it as ``old``)."""

    class Misnamed(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._modules[new] = self._modules.pop(old)

        def __getattr__(self, name):
            return super().__getattr__(new if name == old else name)

    Misnamed.__name__ = f"Misnamed{base.__name__}"
    return Misnamed


#: exercise -> (a submodule of the solution, the wrong name it is registered under)
MISNAMED = {"ViLTEmbeddings": ("type_embedding", "modality_embedding"),
            "ViLT": ("norm", "final_norm"), "ITMHead": ("fc", "classifier"),
            "MLMHead": ("decoder", "output"), "VQAHead": ("fc2", "classifier")}


@pytest.mark.parametrize("name", MISNAMED)
def test_rejects_a_misnamed_parameter_on_every_case(name):
    """A module whose parameters are misnamed fails, saying which, on every case: also on the
    cases that must raise ValueError, where a ValueError about the names must not count as the
    refusal of the bad input."""
    old, new = MISNAMED[name]
    check, implementation = getattr(checks, name), misnamed(solution[name], old, new)
    which = [f"missing: {old}.", f"unexpected: {new}."]
    with pytest.raises(CheckFailure) as failure:
        check(implementation, hidden=True)
    assert all(part in str(failure.value) for part in which), str(failure.value)
    raising = [case for case in check.all_cases(hidden=True) if case.raises is ValueError]
    assert raising or name == "ViLT"  # ViLT has no case that must raise
    for case in raising:
        expected = check.run_reference(case)
        with pytest.raises(CheckFailure) as failure:
            check.compare(case, check.run_student(implementation, case), expected)
        assert "WrongParameters" in str(failure.value), str(failure.value)
        assert all(part in str(failure.value) for part in which), str(failure.value)


def test_not_implemented_says_what_to_do():
    def blank(*args, **kwargs):
        raise NotImplementedError()

    for name in EXERCISES:
        with pytest.raises(CheckFailure, match="not implemented yet"):
            getattr(checks, name)(blank)


def test_forbidden_encoder_is_available_again_afterwards():
    with pytest.raises(CheckFailure):
        checks.ViLT(TorchEncoder)
    assert nn.TransformerEncoderLayer(8, 2, batch_first=True)(torch.randn(1, 3, 8)).shape == \
        (1, 3, 8)


@pytest.mark.cuda
@pytest.mark.parametrize("name", EXERCISES)
def test_accepts_the_solution_on_cuda(name):
    getattr(checks, name)(solution[EXERCISES[name]], hidden=True)  # runs on CPU and CUDA


# --- the trained VQA model: stand-in models, no training -------------------------------------


class Lookup(nn.Module):
    """A stand-in VQA model that knows the answers of the check's own questions.

    It proves the grading pipeline end to end without training: perfect except on every
    ``every``-th question of the types in ``wrong``, where it gives the next answer instead.
    """

    def __init__(self, seed: int, hidden: bool, wrong: tuple[str, ...] = (), every: int = 1):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        case = checks.vqa_accuracy.cases(torch.Generator().manual_seed(seed), hidden)[0]
        self.table = {}
        for k, (image, tokens, answer, kind) in enumerate(zip(
                case.inputs["images"], case.inputs["tokens"], case.private["answers"],
                case.private["types"], strict=True)):
            if data.QUESTION_TYPES[int(kind)] in wrong and k % every == 0:
                answer = (answer + 1) % len(data.ANSWERS)
            self.table[(image.numpy().tobytes(), tuple(tokens.tolist()))] = int(answer)

    def forward(self, images, tokens):
        answers = [self.table[(i.cpu().numpy().tobytes(), tuple(t.tolist()))]
                   for i, t in zip(images, tokens, strict=True)]
        return nn.functional.one_hot(torch.tensor(answers), len(data.ANSWERS)).float()


def test_the_quality_check_passes_a_perfect_model_and_reports_every_type(capsys):
    checks.vqa_accuracy(Lookup(0, False))
    checks.vqa_accuracy(Lookup(2026, True), seed=2026, hidden=True)
    out = capsys.readouterr().out
    assert "✓ VQA accuracy: 100.0 %" in out
    for kind in data.QUESTION_TYPES:
        assert f"VQA accuracy: {kind}: 100.0 %" in out


def test_the_quality_check_fails_a_model_that_cannot_count():
    # right on 90 % of all questions, but on only half of the counting ones
    with pytest.raises(CheckFailure, match="VQA accuracy: count: 50.0 %, needs at least 75.0 %"):
        checks.vqa_accuracy(Lookup(0, False, wrong=("count",), every=2))
    # counting about two in three right: below the CLIP-style baseline's 70 %, so not enough
    with pytest.raises(CheckFailure, match=r"VQA accuracy: count: 6\d\.\d %, needs at least 75"):
        checks.vqa_accuracy(Lookup(0, False, wrong=("count",), every=3))


def test_the_quality_check_fails_a_weak_model():
    with pytest.raises(CheckFailure, match="VQA accuracy: 60.0 %, needs at least 85.0 %"):
        checks.vqa_accuracy(Lookup(0, False, wrong=("colour", "shape")))


@pytest.mark.parametrize("model, reason", [
    (lambda images, tokens: torch.zeros(len(images), 3), "cannot be scored"),
    (lambda images, tokens: 1 / 0, "your model raised ZeroDivisionError"),
])
def test_the_quality_check_fails_broken_models(model, reason):
    with pytest.raises(CheckFailure, match=reason):
        checks.vqa_accuracy(model)


def test_the_questions_are_held_out_and_balanced():
    case = checks.vqa_accuracy.cases(torch.Generator().manual_seed(0), False)[0]
    assert case.inputs["tokens"].shape == (1000, checks.VQA_CONTEXT)
    assert "answers" not in case.inputs and "answers" in case.private
    counts = torch.bincount(case.private["types"], minlength=5)
    assert counts.tolist() == [200] * 5
    notebook = data.ShapesVQA("test", size=1000, seed=0)  # the notebook's own test set
    assert not torch.equal(case.inputs["images"][:10], notebook.images[:10])


def test_the_baseline_report_grades_nothing(capsys):
    checks.vqa_report(lambda images, tokens: torch.zeros(len(images), len(data.ANSWERS)))
    assert "baseline VQA accuracy: count" in capsys.readouterr().out
