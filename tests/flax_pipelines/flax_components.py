"""Tiny random-weight components for diffusers 0.39's Flax pipelines, built offline from configs.

Nothing is downloaded: the UNet, the VAE and the CLIP text encoders are initialised from small
configs with fixed seeds, and the CLIP tokenizer reads a vocabulary and merges file written here
(every byte as a token, its end-of-word form, a few merges and the two special tokens).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from diffusers import (
    FlaxAutoencoderKL,
    FlaxStableDiffusionImg2ImgPipeline,
    FlaxStableDiffusionPipeline,
    FlaxStableDiffusionXLPipeline,
    FlaxUNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTokenizer,
    FlaxCLIPTextModel,
    FlaxCLIPTextModelWithProjection,
)

#: Pixels per side of the generated images; the VAE has two blocks (a factor 2), so the latents are
#: 4 × 8 × 8.
SIZE = 16
MAX_LENGTH = 8  # tokens per prompt
HIDDEN = 32  # CLIP hidden size


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values (the tokenizer's byte encoder)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """A tiny CLIP BPE vocabulary (``vocab.json``) and ``merges.txt`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("c", "a"), ("ca", "t</w>")]
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
    merges_file.write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    return vocab_file, merges_file


def tokenizer(folder: Path) -> CLIPTokenizer:
    vocab_file, merges_file = write_tokenizer_files(folder)
    return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=MAX_LENGTH)


def _text_config(tok: CLIPTokenizer, **extra: Any) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **extra,
    )


def _init(model: Any, seed: int) -> Any:
    """A transformers Flax model's random parameters, initialised under one ``jax.jit`` (one
    compile instead of an op-by-op first run)."""
    shape = (1, MAX_LENGTH)
    return jax.jit(model.init_weights, static_argnums=1)(jax.random.key(seed), shape)


def text_encoder(tok: CLIPTokenizer, seed: int = 0) -> tuple[FlaxCLIPTextModel, Any]:
    model = FlaxCLIPTextModel(_text_config(tok), _do_init=False)
    return model, _init(model, seed)


def unet(seed: int = 0, **extra: Any) -> tuple[FlaxUNet2DConditionModel, Any]:
    config = dict(
        sample_size=SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",),
        block_out_channels=(32,),
        layers_per_block=1,
        attention_head_dim=2,
        cross_attention_dim=HIDDEN,
    )
    config.update(extra)
    model = FlaxUNet2DConditionModel(**config)
    return model, jax.jit(model.init_weights)(jax.random.key(seed))


def vae(seed: int = 1) -> tuple[FlaxAutoencoderKL, Any]:
    model = FlaxAutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=SIZE,
    )
    return model, jax.jit(model.init_weights)(jax.random.key(seed))


class RecordingVAE:
    """The VAE, unchanged, except that the latents it is asked to decode are kept in ``decoded``
    (how a test reads the final latents of a pipeline that only returns images)."""

    def __init__(self, model: FlaxAutoencoderKL) -> None:
        self._model = model
        self.decoded: list[jax.Array] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def apply(self, variables: Any, *args: Any, method: Callable | None = None, **kw: Any) -> Any:
        if method is not None and getattr(method, "__name__", "") == "decode":
            self.decoded.append(args[0])
        return self._model.apply(variables, *args, method=method, **kw)


class SDComponents:
    """The tiny SD components and their params, built once and shared by several pipelines."""

    def __init__(self, folder: Path) -> None:
        self.tokenizer = tokenizer(folder / "tokenizer")
        self.text_encoder, text_params = text_encoder(self.tokenizer)
        self.unet, unet_params = unet()
        self.vae, vae_params = vae()
        self.params = {"unet": unet_params, "vae": vae_params, "text_encoder": text_params}


_SHARED: list[SDComponents] = []


def shared_components(folder: Path) -> SDComponents:
    """The process's one set of SD components (built in ``folder`` the first time): every
    pipeline of the suite shares the same modules and params, so they initialise once."""
    if not _SHARED:
        _SHARED.append(SDComponents(folder))
    return _SHARED[0]


def sd_pipeline(
    components: SDComponents | Path,
    scheduler: Any,
    scheduler_state: Any,
    img2img: bool = False,
) -> tuple[Any, dict[str, Any], RecordingVAE]:
    """An unmodified ``FlaxStableDiffusionPipeline`` (or its img2img variant) around the shared
    components (a folder: :func:`shared_components`), its params, and the recording VAE put in
    after construction."""
    if not isinstance(components, SDComponents):
        components = shared_components(components)
    cls = FlaxStableDiffusionImg2ImgPipeline if img2img else FlaxStableDiffusionPipeline
    pipe = cls(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
    )
    recording = RecordingVAE(components.vae)
    pipe.vae = recording  # after registration: the pipeline's code is untouched
    return pipe, dict(components.params, scheduler=scheduler_state), recording


def sdxl_pipeline(folder: Path, scheduler: Any, scheduler_state: Any) -> tuple[Any, dict[str, Any]]:
    """An unmodified ``FlaxStableDiffusionXLPipeline`` with two tiny text encoders."""
    tok = tokenizer(folder / "tokenizer")
    tok_2 = tokenizer(folder / "tokenizer_2")
    encoder, encoder_params = text_encoder(tok)
    encoder_2 = FlaxCLIPTextModelWithProjection(
        _text_config(tok_2, projection_dim=HIDDEN), _do_init=False
    )
    time_dim = 8
    unet_model, unet_params = unet(
        cross_attention_dim=2 * HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=HIDDEN + 6 * time_dim,
    )
    vae_model, vae_params = vae()
    pipe = FlaxStableDiffusionXLPipeline(
        text_encoder=encoder,
        text_encoder_2=encoder_2,
        vae=vae_model,
        tokenizer=tok,
        tokenizer_2=tok_2,
        unet=unet_model,
        scheduler=scheduler,
    )
    params = {
        "unet": unet_params,
        "vae": vae_params,
        "text_encoder": encoder_params,
        "text_encoder_2": _init(encoder_2, 1),
        "scheduler": scheduler_state,
    }
    return pipe, params


def sdxl_latents(
    pipe: Any, params: dict[str, Any], ids: Any, steps: int, guidance: float
) -> Callable:
    """The SDXL pipeline's ``_generate`` under ``jax.jit`` as ``latents(state, seed)``: the
    scheduler state is an argument and ``return_latents=True`` gives the loop's final latents."""

    @jax.jit
    def latents(state: Any, seed: jax.Array) -> jax.Array:
        return pipe._generate(
            ids,
            dict(params, scheduler=state),
            seed,
            steps,
            SIZE,
            SIZE,
            guidance,
            return_latents=True,
        )

    return latents


def cfg_unet(
    pipe: Any,
    params: dict[str, Any],
    context: jax.Array,
    guidance: float,
    added_cond_kwargs: dict[str, jax.Array] | None = None,
) -> Callable:
    """The pipelines' denoiser as a ``model_fn(x, t)`` for ``tcd_jax.sample``: the UNet on the
    doubled batch (unconditional, text), then classifier-free guidance, as their loop body.
    ``added_cond_kwargs``: SDXL's pooled text embeddings and time ids."""
    scale = jnp.array([guidance], dtype=jnp.float32)
    extra = {} if added_cond_kwargs is None else {"added_cond_kwargs": added_cond_kwargs}

    def model_fn(x: jax.Array, t: jax.Array) -> jax.Array:
        x_in = jnp.concatenate([x] * 2)
        timestep = jnp.broadcast_to(t, x_in.shape[0])
        out = pipe.unet.apply(
            {"params": params["unet"]},
            x_in,
            jnp.array(timestep, dtype=jnp.int32),
            encoder_hidden_states=context,
            **extra,
        ).sample
        uncond, text = jnp.split(out, 2, axis=0)
        return uncond + scale * (text - uncond)

    return model_fn


def prompt_ids(tok: CLIPTokenizer, prompts: list[str]) -> Any:
    """Token ids as the pipelines' ``prepare_inputs`` makes them."""
    return tok(
        prompts, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="np"
    ).input_ids


def sd_context(pipe: Any, params: dict[str, Any], ids: Any) -> jax.Array:
    """The text embeddings the SD pipelines build: [unconditional; prompt]."""
    uncond_ids = prompt_ids(pipe.tokenizer, [""] * ids.shape[0])

    @jax.jit
    def encode(ids: jax.Array, uncond_ids: jax.Array) -> jax.Array:
        prompt = pipe.text_encoder(ids, params=params["text_encoder"])[0]
        uncond = pipe.text_encoder(uncond_ids, params=params["text_encoder"])[0]
        return jnp.concatenate([uncond, prompt])

    return encode(ids, uncond_ids)


def sdxl_cfg_unet(
    pipe: Any, params: dict[str, Any], ids: Any, guidance: float, size: int = SIZE
) -> Callable:
    """The SDXL pipeline's denoiser as ``model_fn(x, t)``: its two-encoder embeddings, zero
    negative embeddings, the size/crop time ids, the UNet on the doubled batch, then guidance."""
    prompt_embeds, pooled = jax.jit(pipe.get_embeddings)(ids, params)
    time_ids = pipe._get_add_time_ids(
        (size, size), (0, 0), (size, size), prompt_embeds.shape[0], dtype=prompt_embeds.dtype
    )
    context = jnp.concatenate([jnp.zeros_like(prompt_embeds), prompt_embeds])
    added = {
        "text_embeds": jnp.concatenate([jnp.zeros_like(pooled), pooled]),
        "time_ids": jnp.concatenate([time_ids, time_ids]),
    }
    return cfg_unet(pipe, params, context, guidance, added)
