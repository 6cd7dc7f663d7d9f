"""Tiny random-weight Stable Diffusion / SDXL components, built offline from configs.

Nothing is downloaded: the models are created from small configs under a fixed torch seed, and
the CLIP tokenizer is built from an in-memory byte-level vocabulary (every byte, as a word piece
and as a word end, plus CLIP's two special tokens) with no merges.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from tokenizers import pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

CROSS_ATTENTION_DIM = 32


def tiny_tokenizer() -> CLIPTokenizer:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for piece in alphabet + [c + "</w>" for c in alphabet]:
        vocab[piece] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _text_config(vocab_size: int, projection_dim: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=CROSS_ATTENTION_DIM,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        projection_dim=projection_dim,
        hidden_act="gelu",
        max_position_embeddings=77,
    )


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(16, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )


def tiny_unet(**overrides) -> UNet2DConditionModel:
    config = {
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "sample_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": CROSS_ATTENTION_DIM,
        "norm_num_groups": 16,
    }
    config.update(overrides)
    return UNet2DConditionModel(**config)


def sd_components(seed: int = 0) -> dict:
    """Components of a ``StableDiffusionPipeline`` (text-to-image, ε-prediction)."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    unet = tiny_unet()
    vae = tiny_vae()
    text_encoder = CLIPTextModel(_text_config(len(tokenizer)))
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
        "requires_safety_checker": False,
    }


def sdxl_components(seed: int = 0, in_channels: int = 4) -> dict:
    """Components of the SDXL pipelines (two text encoders, added time/text conditioning)."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    unet = tiny_unet(
        in_channels=in_channels,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + the pooled text (32)
        cross_attention_dim=2 * CROSS_ATTENTION_DIM,  # both text encoders, concatenated
    )
    vae = tiny_vae()
    text_encoder = CLIPTextModel(_text_config(len(tokenizer)))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(len(tokenizer)))
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder.eval(),
        "tokenizer": tokenizer,
        "text_encoder_2": text_encoder_2.eval(),
        "tokenizer_2": tokenizer,
        "image_encoder": None,
        "feature_extractor": None,
    }
