"""The check of ``greedy_decode(model, images, max_len, start_id, end_id)``, on a stub captioner
whose greedy caption of each image is known (``StubCaptioner``).

The contract, as the notebook states it:

- the result is a long tensor (B, L), 1 <= L <= max_len, on the images' device; column 0 is
  ``start_id``; each row holds the argmax of the model's last position, step by step, up to
  and including its ``end_id``, and padding (0) after it;
- decoding stops when every row has ended or the tensor has ``max_len`` columns. Columns after
  the last row's end that hold padding alone are accepted (a loop that always runs
  ``max_len - 1`` steps and pads correctly gives the same captions, only slower): the check
  drops trailing all-padding columns before comparing;
- the model is called at most ``max_len - 1`` times for any image; decoding the rows one at a
  time (a loop over the batch) is accepted, being correct, only slower;
- the model runs under ``torch.no_grad()`` (decoding trains nothing).
"""

from __future__ import annotations

import torch
from torch import nn

from course_utils.checks.captioning._shared import KeyHintCheck, randn
from course_utils.checks.case import Case, Mistake, Outputs
from course_utils.checks.runners import clone_inputs, expect_raise

PAD = 0
#: Keys of the outputs besides ``output``.
CALLS = "calls of the model beyond max_len - 1 (for one image)"
NO_GRAD = "the model ran under torch.no_grad()"


class StubCaptioner(nn.Module):
    """A stand-in for a trained captioner: ``model(images, tokens) -> logits (B, T, V)``.

    Each of its images has a script ``[start, w1, …]``; position t of a row predicts the
    script's token t + 1 while the row so far follows the script, and an "off-script" word
    (V - 1) once it does not. Images are recognised by their pixels, so any batch of them, in
    any order, works (a loop over the rows too). It counts the calls per image, and records
    whether autograd was on.
    """

    def __init__(self, images: torch.Tensor, scripts: torch.Tensor, noise: torch.Tensor):
        super().__init__()
        self.images, self.scripts, self.noise = images, scripts, noise  # noise (N, S, V)
        self.scale = nn.Parameter(torch.ones((), dtype=noise.dtype, device=noise.device))
        self.calls = torch.zeros(len(images), dtype=torch.long)
        self.grad_enabled = False

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tokens.ndim != 2 or tokens.shape[0] != images.shape[0]:
            raise ValueError(f"the model expects images (B, C, H, W) and tokens (B, T); got "
                             f"{tuple(images.shape)} and {tuple(tokens.shape)}")
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise ValueError(f"the model expects integer token ids, got {tokens.dtype}")
        if tokens.device != self.scripts.device or images.device != self.images.device:
            raise ValueError(f"the model is on {self.scripts.device}; got images on "
                             f"{images.device} and tokens on {tokens.device}")
        same = (images[:, None] == self.images[None]).flatten(2).all(-1)  # (B, N)
        if not same.any(1).all():
            raise ValueError("the model was given an image that is not one of `images`")
        rows = same.float().argmax(1)  # (B,)
        self.calls += torch.bincount(rows.cpu(), minlength=len(self.images))
        self.grad_enabled |= torch.is_grad_enabled()
        steps, vocab = tokens.shape[1], self.noise.shape[-1]
        script, noise = self.scripts[rows], self.noise[rows]  # (B, S), (B, S, V)
        if script.shape[1] < steps + 1:  # past the end of the script: off-script
            extra = steps + 1 - script.shape[1]
            script = torch.cat([script, script.new_full((len(rows), extra), vocab - 1)], 1)
            noise = torch.cat([noise, noise.new_zeros(len(rows), extra, vocab)], 1)
        on_script = (tokens == script[:, :steps]).long().cumprod(1).bool()  # (B, T)
        following = torch.where(on_script, script[:, 1:steps + 1], vocab - 1)  # (B, T)
        logits = noise[:, :steps] + 10 * nn.functional.one_hot(following, vocab)  # (B, T, V)
        return self.scale * logits


def _reference_greedy_decode(model, images, max_len, start_id, end_id):
    """Greedy decoding, the batch together, stopping when every row has ended."""
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    tokens = torch.full((images.shape[0], 1), start_id, dtype=torch.long, device=images.device)
    ended = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
    with torch.no_grad():
        while tokens.shape[1] < max_len and not ended.all():
            following = model(images, tokens)[:, -1].argmax(-1)  # (B,)
            following = following.masked_fill(ended, PAD)
            tokens = torch.cat([tokens, following[:, None]], 1)  # (B, T + 1)
            ended |= following == end_id
    return tokens


def _run_greedy_decode(implementation, case: Case) -> Outputs:
    """The caption tokens (trailing all-padding columns dropped), the calls of the model past
    max_len - 1 for the image called most, and whether autograd was off."""
    inputs = clone_inputs(case)
    model = StubCaptioner(inputs["images"], inputs["scripts"], inputs["noise"])
    max_len = inputs["max_len"]

    def decode():
        return implementation(model, inputs["images"], max_len, inputs["start_id"],
                              inputs["end_id"])

    if case.raises is not None:
        return expect_raise(decode, case)
    tokens = decode()
    if type(tokens) is torch.Tensor and tokens.ndim == 2 and tokens.device.type != "meta":
        while tokens.shape[1] > 1 and bool((tokens[:, -1] == PAD).all()):
            tokens = tokens[:, :-1]
    extra = max(0, int(model.calls.max()) - (max_len - 1))
    return {"output": tokens, CALLS: extra, NO_GRAD: not model.grad_enabled}


def _greedy_cases(generator: torch.Generator, hidden: bool) -> list[Case]:
    g = generator

    def case(name, words, max_len, start_id=1, end_id=2, vocab=16, **kwargs):
        """``words[b]``: how many words row b says before its end token (None: never ends)."""
        batch = len(words)
        length = max(max_len, 2 + max(n or 0 for n in words)) + 2
        scripts = torch.randint(5, vocab - 1, (batch, length), generator=g)
        scripts[:, 0] = start_id
        for row, n in enumerate(words):
            if n is not None:
                scripts[row, n + 1] = end_id
        inputs = {"images": randn(g, batch, 3, 4, 4), "max_len": max_len,
                  "start_id": start_id, "end_id": end_id, "scripts": scripts,
                  "noise": torch.rand((batch, length, vocab), generator=g)}
        return Case(name, inputs, **kwargs)

    cases = [
        case("3 images whose captions end after 2, 4 and 3 words, max_len 9", [2, 4, 3], 9),
        case("the second of 3 captions never ends: stop at max_len = 6", [1, None, 3], 6),
        case("batch 1, a caption of 1 word, max_len 5", [1], 5),
        case("4 captions that end together after 3 words, max_len 5 (exactly enough)",
             [3, 3, 3, 3], 5),
        case("max_len 0, which it must refuse", [2, 2], 0, raises=ValueError),
    ]
    if hidden:
        cases[-1:-1] = [
            case("6 images, the first says nothing (its first token is the end), two never "
                 "end, max_len 7", [0, 5, None, 2, None, 1], 7),
            case("max_len 1: the start token alone", [2, 3], 1),
            case("start_id 3 and end_id 4 (another vocabulary's), max_len 8", [4, 1, 6], 8,
                 start_id=3, end_id=4),
            case("the first row ends first (after 1 word), the others after 5, max_len 10",
                 [1, 5, 5], 10),
        ]
    return cases


def _decoder(mistake: str):
    """greedy_decode written like a student's, with one of the common mistakes."""
    def implementation(model, images, max_len, start_id, end_id):
        if max_len < 1:
            raise ValueError("max_len must be at least 1")
        batch = images.shape[0]
        tokens = torch.full((batch, 1), start_id, dtype=torch.long, device=images.device)
        ended = torch.zeros(batch, dtype=torch.bool, device=images.device)
        limit = max_len + 1 if mistake == "one too many" else max_len
        with torch.set_grad_enabled(mistake == "no no_grad"):
            while tokens.shape[1] < limit and not ended.all():
                position = 0 if mistake == "first position" else -1
                following = model(images, tokens)[:, position].argmax(-1)  # (B,)
                if mistake != "no padding":
                    following = following.masked_fill(ended, PAD)
                tokens = torch.cat([tokens, following[:, None]], 1)
                ended |= following == end_id
                if mistake == "first row" and ended.any():
                    break
                if mistake == "no padding":
                    ended[:] = False  # never stops before max_len
        return tokens[:, 1:] if mistake == "no start" else tokens

    return implementation


_NO_GRAD = ("decoding builds autograd graphs it never uses: run the loop under "
            "torch.no_grad() (a decorator @torch.no_grad() or a with block).")

greedy_decode = KeyHintCheck(
    exercise="greedy_decode",
    reference=_reference_greedy_decode,
    cases=_greedy_cases,
    run=_run_greedy_decode,
    mistakes=[
        Mistake("the rows go on after their end token: once a row has produced end_id, append "
                "padding (0) to it at every later step (keep a (B,) `ended` flag), and stop when "
                "every row has ended.", _decoder("no padding")),
        Mistake("decoding stops as soon as one row has ended: the other captions are cut "
                "short. Stop when *every* row has ended (ended.all()), padding the rows that "
                "ended earlier.", _decoder("first row")),
        Mistake("the next token is the argmax of the first position: position t predicts token "
                "t + 1, so the next token comes from the last position, logits[:, -1].",
                _decoder("first position")),
        Mistake("the start token is missing: the result starts with start_id, like the "
                "training captions, so that vocab.decode reads it the same way.",
                _decoder("no start")),
        Mistake("one step too many: the result has at most max_len columns, the start token "
                "included (stop when tokens.shape[1] == max_len).", _decoder("one too many")),
        Mistake(_NO_GRAD, _decoder("no no_grad")),
    ],
    key_hints={
        CALLS: "the model is called more often than the tokens need: one call per appended "
               "column, so at most max_len - 1 calls for a row, and none once every row has "
               "ended (check the stopping condition before calling the model).",
        NO_GRAD: _NO_GRAD},
)
