"""fp8 attention: FlashAttention 3 with float8 q/k/v, per-head scales (the fp8 tiers, Hopper).

Attention is a third of a Kontext step at 8.7 k tokens (performance.md): fp8 linears alone
cannot reach the fp8 tier's goal. flux-fast casts q/k/v to float8 unscaled and calls FA3;
here each (image, head) of q, k and v gets its own scale (amax / 448) and FA3 takes the
matching descale factors, so a head with large activations does not saturate.

Hand-written (one attention processor) because diffusers has no fp8 attention backend and
its `_flash_3` backend passes q/k/v through as they are; the FA3 call is diffusers' own
registered custom op (`_wrapped_flash_attn_3`, compile-safe), with its descale arguments.
torchao's prototype (`apply_low_precision_attention`) wraps the whole model and sets a
process-wide inductor pass, which every later engine in the process would inherit.

On CPU (the compile rehearsal) the same quantisation runs and the float8 q/k/v are scaled
back for PyTorch's SDPA: it shows the deviation that fp8 inputs add, not FA3's kernel.
"""

from __future__ import annotations

#: Largest float8_e4m3fn value: a head's amax maps to it.
E4M3_MAX = 448.0


def quantize_heads(x):
    """(float8 tensor, float32 descale [batch, heads]) of a [batch, tokens, heads, dim]
    tensor, one scale per (batch, head)."""
    import torch

    amax = x.abs().amax(dim=(1, 3)).float().clamp(min=1e-12)
    scale = amax / E4M3_MAX
    quantised = (x.float() / scale[:, None, :, None]).to(torch.float8_e4m3fn)
    return quantised, scale


def fp8_attention(query, key, value, scale: float | None = None):
    """softmax(q kᵀ) v with float8 q/k/v: FA3 on CUDA, an emulation on CPU. Inputs and
    output are [batch, tokens, heads, dim]; the output keeps the query's dtype."""
    import torch

    (q8, q_scale), (k8, k_scale), (v8, v_scale) = (quantize_heads(t)
                                                  for t in (query, key, value))
    if query.device.type == "cuda":
        from diffusers.models.attention_dispatch import _wrapped_flash_attn_3

        out, _lse = _wrapped_flash_attn_3(q8, k8, v8, softmax_scale=scale, q_descale=q_scale,
                                          k_descale=k_scale, v_descale=v_scale)
        return out.to(query.dtype)

    def back(t8, s):
        return (t8.float() * s[:, None, :, None]).to(query.dtype).transpose(1, 2)

    out = torch.nn.functional.scaled_dot_product_attention(
        back(q8, q_scale), back(k8, k_scale), back(v8, v_scale), scale=scale)
    return out.transpose(1, 2)


def _processor_class():
    from diffusers.models.transformers.transformer_flux import (
        FluxAttnProcessor,
        _get_qkv_projections,
        apply_rotary_emb,
    )

    class Fp8FluxAttnProcessor(FluxAttnProcessor):
        """diffusers' FluxAttnProcessor with fp8_attention in place of its dispatch."""

        def __call__(self, attn, hidden_states, encoder_hidden_states=None,
                     attention_mask=None, image_rotary_emb=None):
            import torch

            if attention_mask is not None:  # FA3 takes no mask; Kontext passes none
                raise ValueError("fp8 attention takes no attention mask")
            query, key, value, e_query, e_key, e_value = _get_qkv_projections(
                attn, hidden_states, encoder_hidden_states)
            query, key, value = (t.unflatten(-1, (-1, attn.head_dim))
                                 for t in (query, key, value))
            query, key = attn.norm_q(query), attn.norm_k(key)
            if attn.added_kv_proj_dim is not None:
                e_query, e_key, e_value = (t.unflatten(-1, (-1, attn.head_dim))
                                           for t in (e_query, e_key, e_value))
                e_query, e_key = attn.norm_added_q(e_query), attn.norm_added_k(e_key)
                query = torch.cat([e_query, query], dim=1)
                key = torch.cat([e_key, key], dim=1)
                value = torch.cat([e_value, value], dim=1)
            if image_rotary_emb is not None:
                query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
                key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
            hidden_states = fp8_attention(query, key, value).flatten(2, 3).to(query.dtype)
            if encoder_hidden_states is None:
                return hidden_states
            text = encoder_hidden_states.shape[1]
            encoder_hidden_states, hidden_states = hidden_states.split_with_sizes(
                [text, hidden_states.shape[1] - text], dim=1)
            hidden_states = attn.to_out[1](attn.to_out[0](hidden_states.contiguous()))
            return hidden_states, attn.to_add_out(encoder_hidden_states.contiguous())

    return Fp8FluxAttnProcessor


def enable_fp8_attention(transformer) -> str:
    """Give every attention module of the transformer the fp8 processor; returns the
    kernel's name for EngineInfo ("FlashAttention 3" on CUDA)."""
    processor = _processor_class()()
    transformer.set_attn_processor(processor)
    return "FlashAttention 3" if transformer.device.type == "cuda" else "SDPA (fp8 emulated)"
