"""Tiny random-weight flow-matching pipelines (FLUX.1, SD3, Wan 2.1), built offline from configs.

For the pipeline tests of a flow-matching scheduler that replaces diffusers'
``FlowMatchEulerDiscreteScheduler``. Nothing is downloaded and no text encoder runs: every call
passes fixed ``prompt_embeds`` (and ``pooled_prompt_embeds`` / the negative embeddings where the
pipeline wants them), so the text encoders and tokenizers are ``None``, which each of these
pipelines accepts once the embeddings are given. The denoisers and VAEs are tiny, built from
configs under a fixed torch seed (the global RNG is restored afterwards), and each pipeline
carries a ``FlowMatchEulerDiscreteScheduler`` configured as the real model ships it (see the
``*_SCHEDULER`` dicts).

Each builder returns a pipeline; each ``run_*`` function calls it once with a given scheduler
and returns the output as a NumPy array, the pipeline's own scheduler put back afterwards (so
``pipe.scheduler.config`` stays the shipped reference config). The initial noise comes from a
``torch.Generator`` seeded with ``seed``. The flow pipelines pass no generator to
``scheduler.step``, so a stochastic step draws from torch's global RNG: ``step_seed`` seeds it
right before the call (inside ``torch.random.fork_rng``, so the caller's global RNG is left as it
was). The default output is the final latents (``output_type="latent"``): exact, no VAE decode,
no clipping to [0, 1]; pass ``output_type="np"`` for decoded images/frames.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    FluxImg2ImgPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    WanPipeline,
    WanTransformer3DModel,
)

#: black-forest-labs/FLUX.1-dev, scheduler/scheduler_config.json (FLUX.1-schnell ships
#: shift 1.0 and use_dynamic_shifting false instead). With dynamic shifting the pipeline passes
#: ``mu`` (from the image's token count) and its own ``sigmas`` to ``set_timesteps``.
FLUX_DEV_SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)
#: stabilityai/stable-diffusion-3-medium-diffusers, scheduler/scheduler_config.json (the SD3.5
#: large/medium repositories ship the same two values).
SD3_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)
#: Wan-AI/Wan2.1-T2V-1.3B-Diffusers ships ``UniPCMultistepScheduler`` with
#: ``prediction_type="flow_prediction"``, ``use_flow_sigmas=True`` and ``flow_shift=3.0``
#: (diffusers' Wan docs: "The default value is 3.0 for Wan"; WanPipeline's docstring example:
#: "5.0 for 720P, 3.0 for 480P"). The Euler swap keeps that shift, under Euler's name ``shift``
#: (``from_config`` of the UniPC config would drop ``flow_shift`` and leave shift 1.0).
WAN_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0)

#: a few steps: enough for several middle steps plus the last (σ_next = 0)
STEPS = 4
#: tokens of the fixed text embeddings
TEXT_TOKENS = 8
FLUX_SIZE = 32  # pixels; the tiny VAE downsamples 2x: 16x16 latents, packed 2x2: 64 tokens
SD3_SIZE = 32  # pixels; 16x16 latents, 2x2 patches: 64 tokens
WAN_SIZE = 32  # pixels; the Wan VAE downsamples 8x: 4x4 latents, 2x2 patches: 4 tokens a frame
WAN_FRAMES = 9  # 4k + 1 frames; the VAE's 4x temporal downsampling makes 3 latent frames

_FLUX_TEXT_DIM = 32  # T5 features (4096 in FLUX.1)
_FLUX_POOLED_DIM = 32  # CLIP pooled features (768 in FLUX.1)
_SD3_TEXT_DIM = 32  # CLIP-L+G / T5 features (4096 in SD3)
_SD3_POOLED_DIM = 64  # CLIP-L+G pooled features (2048 in SD3)
_WAN_TEXT_DIM = 32  # umT5 features (4096 in Wan)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _flux_components(seed: int) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,  # 4 latent channels x 2x2 packing (FLUX.1: 16 x 4 = 64)
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=_FLUX_TEXT_DIM,
            pooled_projection_dim=_FLUX_POOLED_DIM,
            guidance_embeds=True,  # FLUX.1-dev is guidance-distilled: guidance is an input
            axes_dims_rope=(4, 4, 8),  # sums to attention_head_dim
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(8, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=FLUX_SIZE,
            use_quant_conv=False,  # as FLUX.1's VAE
            use_post_quant_conv=False,
            scaling_factor=0.3611,  # FLUX.1's VAE
            shift_factor=0.1159,
        )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(**FLUX_DEV_SCHEDULER),
        "vae": vae.eval(),
        "transformer": transformer.eval(),
        "text_encoder": None,
        "tokenizer": None,
        "text_encoder_2": None,
        "tokenizer_2": None,
        "image_encoder": None,
        "feature_extractor": None,
    }


def flux_pipeline(seed: int = 0) -> FluxPipeline:
    """A tiny FLUX.1-dev text-to-image pipeline (guidance embedded, dynamic shifting)."""
    pipe = FluxPipeline(**_flux_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_img2img_pipeline(seed: int = 0) -> FluxImg2ImgPipeline:
    """The same tiny FLUX.1-dev weights in an image-to-image pipeline (``strength`` enters
    through the scheduler's ``scale_noise`` and ``set_begin_index``)."""
    pipe = FluxImg2ImgPipeline(**_flux_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd3_pipeline(seed: int = 0) -> StableDiffusion3Pipeline:
    """A tiny Stable Diffusion 3 text-to-image pipeline (static shift, classifier-free
    guidance: the batch is doubled with fixed negative embeddings)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = SD3Transformer2DModel(
            sample_size=SD3_SIZE // 2,
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=_SD3_TEXT_DIM,
            caption_projection_dim=32,  # = heads x head dim
            pooled_projection_dim=_SD3_POOLED_DIM,
            pos_embed_max_size=16,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(8, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=SD3_SIZE,
            use_quant_conv=False,  # as SD3's VAE
            use_post_quant_conv=False,
            scaling_factor=1.5305,  # SD3's VAE
            shift_factor=0.0609,
        )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(**SD3_SCHEDULER),
        vae=vae.eval(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
        image_encoder=None,
        feature_extractor=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def wan_pipeline(seed: int = 0) -> WanPipeline:
    """A tiny Wan 2.1 text-to-video pipeline with the Euler scheduler in place of the shipped
    UniPC (classifier-free guidance with fixed negative embeddings)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=16,
            out_channels=16,
            text_dim=_WAN_TEXT_DIM,
            freq_dim=32,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        )
        vae = AutoencoderKLWan(
            base_dim=4,
            z_dim=16,  # as Wan 2.1's VAE (its latents_mean/std have 16 entries)
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],  # 4x in time, 8x in space, as Wan 2.1's
        )
    pipe = WanPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=vae.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(**WAN_SCHEDULER),
        transformer=transformer.eval(),
        transformer_2=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, scheduler, seed: int, step_seed: int | None, call: dict) -> np.ndarray:
    """One call with ``scheduler`` swapped in; the pipeline's scheduler is put back after."""
    before = pipe.scheduler
    pipe.scheduler = scheduler
    try:
        with torch.random.fork_rng(devices=[]):
            if step_seed is not None:
                torch.manual_seed(step_seed)
            out = pipe(generator=torch.Generator().manual_seed(seed), return_dict=False, **call)[0]
    finally:
        pipe.scheduler = before
    if isinstance(out, torch.Tensor):
        out = out.cpu().numpy()
    return np.asarray(out)


def run_flux(
    pipe: FluxPipeline,
    scheduler,
    seed: int = 0,
    *,
    step_seed: int | None = None,
    steps: int = STEPS,
    output_type: str = "latent",
    **kwargs,
) -> np.ndarray:
    """Latents: packed, ``(1, 64, 16)`` (tokens x channels); images with ``"np"``:
    ``(1, 32, 32, 3)``."""
    call = {
        "prompt_embeds": _randn(1, TEXT_TOKENS, _FLUX_TEXT_DIM, seed=101),
        "pooled_prompt_embeds": _randn(1, _FLUX_POOLED_DIM, seed=102),
        "height": FLUX_SIZE,
        "width": FLUX_SIZE,
        "num_inference_steps": steps,
        "guidance_scale": 3.5,  # FLUX.1-dev's default, an input of the transformer
        "max_sequence_length": TEXT_TOKENS,
        "output_type": output_type,
        **kwargs,
    }
    return _run(pipe, scheduler, seed, step_seed, call)


def flux_input_image() -> torch.Tensor:
    """The fixed input image of :func:`run_flux_img2img`: ``(1, 3, 32, 32)`` in [0, 1]."""
    return torch.rand(1, 3, FLUX_SIZE, FLUX_SIZE, generator=torch.Generator().manual_seed(103))


def run_flux_img2img(
    pipe: FluxImg2ImgPipeline,
    scheduler,
    seed: int = 0,
    *,
    strength: float = 1.0,
    step_seed: int | None = None,
    steps: int = STEPS,
    output_type: str = "latent",
    **kwargs,
) -> np.ndarray:
    """As :func:`run_flux`, from :func:`flux_input_image` (its VAE latents are sampled with the
    same generator). With ``steps=4``, ``strength=0.6`` runs the last 3 of 4 steps."""
    call = {
        "image": flux_input_image(),
        "strength": strength,
        "prompt_embeds": _randn(1, TEXT_TOKENS, _FLUX_TEXT_DIM, seed=101),
        "pooled_prompt_embeds": _randn(1, _FLUX_POOLED_DIM, seed=102),
        "height": FLUX_SIZE,
        "width": FLUX_SIZE,
        "num_inference_steps": steps,
        "guidance_scale": 3.5,
        "max_sequence_length": TEXT_TOKENS,
        "output_type": output_type,
        **kwargs,
    }
    return _run(pipe, scheduler, seed, step_seed, call)


def run_sd3(
    pipe: StableDiffusion3Pipeline,
    scheduler,
    seed: int = 0,
    *,
    step_seed: int | None = None,
    steps: int = STEPS,
    output_type: str = "latent",
    **kwargs,
) -> np.ndarray:
    """Latents ``(1, 4, 16, 16)``; images with ``"np"``: ``(1, 32, 32, 3)``. Guidance 7.0
    (SD3's default) with fixed negative embeddings."""
    call = {
        "prompt_embeds": _randn(1, TEXT_TOKENS, _SD3_TEXT_DIM, seed=201),
        "pooled_prompt_embeds": _randn(1, _SD3_POOLED_DIM, seed=202),
        "negative_prompt_embeds": _randn(1, TEXT_TOKENS, _SD3_TEXT_DIM, seed=203),
        "negative_pooled_prompt_embeds": _randn(1, _SD3_POOLED_DIM, seed=204),
        "height": SD3_SIZE,
        "width": SD3_SIZE,
        "num_inference_steps": steps,
        "guidance_scale": 7.0,
        "output_type": output_type,
        **kwargs,
    }
    return _run(pipe, scheduler, seed, step_seed, call)


def run_wan(
    pipe: WanPipeline,
    scheduler,
    seed: int = 0,
    *,
    step_seed: int | None = None,
    steps: int = STEPS,
    output_type: str = "latent",
    **kwargs,
) -> np.ndarray:
    """Latents ``(1, 16, 3, 4, 4)`` (batch, channels, frames, height, width); frames with
    ``"np"``: ``(1, 9, 32, 32, 3)``. Guidance 5.0 (Wan's default) with fixed negative
    embeddings."""
    call = {
        "prompt_embeds": _randn(1, TEXT_TOKENS, _WAN_TEXT_DIM, seed=301),
        "negative_prompt_embeds": _randn(1, TEXT_TOKENS, _WAN_TEXT_DIM, seed=302),
        "height": WAN_SIZE,
        "width": WAN_SIZE,
        "num_frames": WAN_FRAMES,
        "num_inference_steps": steps,
        "guidance_scale": 5.0,
        "output_type": output_type,
        **kwargs,
    }
    return _run(pipe, scheduler, seed, step_seed, call)
