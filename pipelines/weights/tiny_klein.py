"""A tiny random FLUX.2 [klein] checkpoint built from the real classes, for demos and tests.

Every component is the class the real weights use (Flux2Transformer2DModel,
AutoencoderKLFlux2, Qwen3ForCausalLM with a Qwen2 tokenizer, the flow-matching scheduler),
at tiny width but with the real geometry: 32 latent channels, 8× VAE downsampling and 2×2
patches, so one image token per 16×16 pixels as on the real model. The text encoder has
the 27 layers the pipeline reads hidden states from (9, 18, 27), 16 wide. The tokenizer
is built in code (a byte-level BPE with no merges and the Qwen3 chat template), so
nothing is ever downloaded. The output is noise: the weights are random.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.weights.tiny import TINY_SEED, save_tiny_pipeline

#: The real klein 4B transformer's depth: 5 double-stream and 20 single-stream blocks.
REAL_KLEIN_DEPTH = (5, 20)
#: The text encoder layers whose hidden states the pipeline stacks (its default).
TEXT_LAYERS = (9, 18, 27)
#: Qwen3's chat template, cut to what the pipeline uses: one user turn, the generation
#: prompt and the empty thinking block `enable_thinking=False` asks for.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def _qwen_tokenizer():
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2TokenizerFast

    # A byte-level BPE with no merges: every byte is a token, so any prompt encodes.
    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    for token in (*SPECIAL_TOKENS, "<think>", "</think>"):
        vocab[token] = len(vocab)
    tokenizer = Qwen2TokenizerFast(vocab=vocab, merges=[], model_max_length=512)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_klein_pipeline(depth: tuple[int, int] = (1, 1), distilled: bool = True):
    """Build a Flux2KleinPipeline with tiny random components (real classes, real geometry).

    `depth` is (double-stream, single-stream) transformer blocks; `distilled` marks it as
    the step-distilled release (no classifier-free guidance), as klein 4B and 9B ship.
    """
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(TINY_SEED)
    tokenizer = _qwen_tokenizer()
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text_encoder = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
        num_hidden_layers=max(TEXT_LAYERS), num_attention_heads=2, num_key_value_heads=1,
        head_dim=8, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=pad, eos_token_id=pad, bos_token_id=None,
    ))
    # Real 4B: 5 + 20 blocks, 24 heads × 128, joint dim 3 × 2560, rope axes 4 × 32.
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=128, num_layers=depth[0], num_single_layers=depth[1],
        attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=len(TEXT_LAYERS) * 16, timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False,
    )
    # Four blocks = three downsamplings = 8×; 32 latent channels patchified 2×2 = 128.
    vae = AutoencoderKLFlux2(
        in_channels=3, out_channels=3, latent_channels=32,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4,
        # The real VAE has mid-block attention; at 1024² it would need GBs on CPU here.
        mid_block_add_attention=False,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
        shift=3.0, use_dynamic_shifting=True, time_shift_type="exponential",
    )
    return Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                              tokenizer=tokenizer, transformer=transformer,
                              is_distilled=distilled)


def write_tiny_klein_checkpoint(directory: str | Path,
                                depth: tuple[int, int] = (1, 1)) -> Path:
    """Write the tiny klein checkpoint to `directory` (diffusers layout) and return it."""
    return save_tiny_pipeline(build_tiny_klein_pipeline(depth), directory,
                              "kontext weights tiny --model klein-4b")
