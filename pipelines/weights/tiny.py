"""A tiny random FLUX.1 Kontext checkpoint built from the real classes, for demos and tests.

Every component is the class the real weights use, at tiny width but with the real
geometry: 16 latent channels, 8× VAE downsampling and 2×2 patch packing, so the token
counts (and so the shapes the server and engine see) match the real model. Tokenizers
are built in code, so nothing is ever downloaded. The output is noise: the weights are
random.
"""

from __future__ import annotations

import string
from pathlib import Path

#: Fixed so that `kontext weights tiny` writes the same weights on every machine.
TINY_SEED = 20251124
#: The real transformer's depth: 19 double-stream and 38 single-stream blocks.
REAL_DEPTH = (19, 38)


def _clip_tokenizer():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    # A byte-level BPE with no merges: every byte is a token, so any prompt encodes.
    alphabet = ByteLevel.alphabet()
    vocab: dict[str, int] = {}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    for ch in sorted(alphabet):
        vocab[ch + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _t5_tokenizer():
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    pieces += [(ch, -2.0) for ch in string.printable if not ch.isspace()]
    pieces += [("▁" + ch, -1.5) for ch in string.ascii_letters + string.digits]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512)


def build_tiny_pipeline(depth: tuple[int, int] = (1, 1)):
    """Build a FluxKontextPipeline with tiny random components (real classes, real geometry).

    `depth` is (double-stream, single-stream) transformer blocks; REAL_DEPTH gives a model
    on which per-block compile effects (recompiles, guards) show as on the real one.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(TINY_SEED)
    tokenizer, tokenizer_2 = _clip_tokenizer(), _t5_tokenizer()
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2, projection_dim=32,
            max_position_embeddings=77, hidden_act="quick_gelu",
            bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
            eos_token_id=eot, pad_token_id=eot,
        )
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2), d_model=32, d_ff=64, d_kv=8, num_layers=2,
            num_heads=4, feed_forward_proj="gated-gelu", dropout_rate=0.0,
            is_encoder_decoder=False,
        )
    )
    # Real: 19 + 38 blocks, 24 heads × 128, joint dim 4096, rope axes (16, 56, 56).
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=depth[0], num_single_layers=depth[1],
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
        pooled_projection_dim=32, axes_dims_rope=(4, 6, 6), guidance_embeds=True,
    )
    # Four blocks = three downsamplings = 8×, 16 latent channels, as the real VAE.
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=16,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4,
        sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
        use_quant_conv=False, use_post_quant_conv=False,
        # The real VAE has mid-block attention; at 1024² it would need GBs on CPU here.
        mid_block_add_attention=False, force_upcast=True,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
        shift=3.0, use_dynamic_shifting=True, time_shift_type="exponential",
    )
    return FluxKontextPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
    )


def write_tiny_checkpoint(directory: str | Path, depth: tuple[int, int] = (1, 1)) -> Path:
    """Write the tiny checkpoint to `directory` in the diffusers folder layout and return it."""
    return save_tiny_pipeline(build_tiny_pipeline(depth), directory, "kontext weights tiny")


def save_tiny_pipeline(pipe, directory: str | Path, command: str) -> Path:
    """Save a tiny random `pipe` to `directory` (diffusers layout) with the marker by which
    `weights check` and demo mode tell it is random noise; return the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(directory, safe_serialization=True)
    (directory / "TINY_RANDOM_CHECKPOINT").write_text(
        f"Random weights from `{command}`: every image is noise.\n"
    )
    return directory


def is_tiny_checkpoint(directory: str | Path) -> bool:
    """Whether `directory` was written by write_tiny_checkpoint."""
    return (Path(directory) / "TINY_RANDOM_CHECKPOINT").is_file()
