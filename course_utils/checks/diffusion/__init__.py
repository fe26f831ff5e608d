"""Checks of notebook 06_diffusion: a denoising diffusion model, from the noise schedule to
text-to-image sampling with classifier-free guidance. One file per exercise, in notebook order:

- ``linear_beta_schedule``: against ``DDPMScheduler(beta_schedule="linear")``;
- ``cosine_beta_schedule``: against ``DDPMScheduler(beta_schedule="squaredcos_cap_v2")``;
- ``q_sample``: the forward process q(x_t | x_0), against ``DDPMScheduler.add_noise``;
- ``timestep_embedding``: against diffusers' ``get_timestep_embedding`` with its defaults
  (``[sin | cos]``, frequencies ``10000^(-i / (half - 1))``, odd widths padded at the end);
- ``diffusion_loss``: a ``StochasticCheck``; a stub model records what it receives and the
  trusted side tests the recordings (noise, timesteps, dropout, the MSE against the noise);
- ``p_sample_step``: one reverse step, against ``DDPMScheduler.step`` (``fixed_small``,
  ``clip_sample=True``) given the same noise;
- ``sample``: the whole chain with classifier-free guidance, stepped by the same scheduler;
- ``text_to_image`` (``quality``): the trained model's samples, graded by ``judge_images``
  (``judge``), which names the Shapes-world object that best explains each image.

Shared: ``_ddpm`` (the reference scheduler, diffusers refused, the cases' schedules) and
``_stub`` (the stub denoiser handed to ``diffusion_loss`` and ``sample``).
"""

from course_utils.checks.diffusion._ddpm import CLIP_SAMPLE
from course_utils.checks.diffusion.cosine_beta_schedule import cosine_beta_schedule
from course_utils.checks.diffusion.diffusion_loss import diffusion_loss
from course_utils.checks.diffusion.judge import judge_images
from course_utils.checks.diffusion.linear_beta_schedule import linear_beta_schedule
from course_utils.checks.diffusion.p_sample_step import p_sample_step
from course_utils.checks.diffusion.q_sample import q_sample
from course_utils.checks.diffusion.quality import MAX_UNEXPLAINED, text_to_image
from course_utils.checks.diffusion.sample import sample
from course_utils.checks.diffusion.timestep_embedding import timestep_embedding

__all__ = ["CLIP_SAMPLE", "MAX_UNEXPLAINED", "cosine_beta_schedule",
           "diffusion_loss", "judge_images", "linear_beta_schedule", "p_sample_step",
           "q_sample", "sample", "text_to_image", "timestep_embedding"]
