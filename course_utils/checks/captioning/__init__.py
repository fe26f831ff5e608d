"""Checks of notebook 07_captioning: generating text from pixels.

The exercises, in notebook order, one file each:

- ``teacher_forcing`` (``teacher_forcing.py``): against ``tokens[:, :-1]`` and
  ``tokens[:, 1:]`` with -100 on padding; the caller's ``tokens`` must come back unchanged;
- ``CrossAttention`` (``cross_attention.py``): against ``nn.MultiheadAttention(batch_first=True)``
  given the same weights (in_proj = the rows of ``q`` then those of ``kv``), with
  ``key_padding_mask=~context_mask``;
- ``CaptionDecoderBlock`` (``caption_decoder_block.py``): against a pre-norm block of torch
  layers (a causal and a cross ``nn.MultiheadAttention``), and for causality: changing the text
  from position t on must leave the outputs before t as they were;
- ``caption_loss`` (``caption_loss.py``): against ``F.cross_entropy(..., ignore_index=-100)``,
  refused (with ``F.nll_loss``) while the student's code runs;
- ``greedy_decode`` (``greedy_decode.py``): on a stub captioner whose greedy captions are known
  (Vinyals et al. 2015, *Show and Tell*, greedy decoding of an image-conditioned language
  model);
- ``coca_loss`` (``coca_loss.py``): against ``open_clip.loss.CoCaLoss`` (Yu et al. 2022,
  *CoCa*), refused with ``ClipLoss`` while the student's code runs;
- ``caption_quality`` (``quality.py``): the trained captioner's greedy captions of held-out
  scenes, judged true and complete by the world (``data.caption_truth``), BLEU-4 reported.

The conventions (the notebook states them):

- the course's word vocabulary (``course_utils.data.Vocabulary``): pad 0, start 1, end 2; a
  caption is ``[start, w1, …, end, pad, …]``; the targets are -100 where nothing is to be
  predicted (``F.cross_entropy``'s ignore_index);
- masks are True where a token is real and may be attended (notebook 02's convention; torch's
  ``key_padding_mask`` means the opposite);
- ``greedy_decode`` returns (B, L ≤ max_len) long tokens starting with start_id, each row
  padded after its end token; trailing columns of padding alone are accepted, and so is a loop
  over the rows (correct, only slower); the model runs under ``torch.no_grad()``.

``F.scaled_dot_product_attention`` is allowed in the attention exercises (the students wrote
attention in notebook 02); ``nn.MultiheadAttention``, ``F.multi_head_attention_forward``, the
``nn.Transformer*`` modules and the course's reference blocks are refused. Module exercises run
through ``runners.run_module``: their parameters are loaded by the names the exercise's
docstring gives (a misnamed one raises ``WrongParameters``).
"""

from __future__ import annotations

from course_utils.checks.captioning.caption_decoder_block import CaptionDecoderBlock
from course_utils.checks.captioning.caption_loss import caption_loss
from course_utils.checks.captioning.coca_loss import coca_loss
from course_utils.checks.captioning.cross_attention import CrossAttention
from course_utils.checks.captioning.greedy_decode import StubCaptioner, greedy_decode
from course_utils.checks.captioning.quality import caption_quality, decode_captions
from course_utils.checks.captioning.teacher_forcing import teacher_forcing
from course_utils.checks.runners import WrongParameters

__all__ = [
    # the checks, in notebook order
    "teacher_forcing", "CrossAttention", "CaptionDecoderBlock", "caption_loss",
    "greedy_decode", "coca_loss",
    # the trained captioner
    "caption_quality",
    # helpers
    "decode_captions",
    "StubCaptioner", "WrongParameters",
]
