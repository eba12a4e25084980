"""A random-weight model of a published shape, made with HF transformers on the GPU and saved as bf16
safetensors (sharded, with an index), for benchmarks: no references are computed.

  qwen3-8b    Qwen3-8B shapes (36 layers, d=4096, 32/8 heads, head_dim 128, MLP 12288, untied), 16.4 GB
  qwen3-32b   Qwen3-32B shapes (64 layers, d=5120, 64/8 heads, head_dim 128, MLP 25600, untied), 65.5 GB

Usage: python3 make_random_model.py OUT_DIR SHAPE TOKENIZER_DIR
"""
import os
import shutil
import sys

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

SHAPES = {
    "qwen3-8b": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8),
    "qwen3-32b": dict(hidden_size=5120, intermediate_size=25600, num_hidden_layers=64, num_attention_heads=64, num_key_value_heads=8),
}


def main(out, shape, tok_dir):
    cfg = Qwen3Config(vocab_size=151936, head_dim=128, max_position_embeddings=40960, rope_theta=1000000.0, rms_norm_eps=1e-6,
                      tie_word_embeddings=False, **SHAPES[shape])
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = Qwen3ForCausalLM(cfg).eval()
    model.save_pretrained(out, safe_serialization=True, max_shard_size="4GB")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tok_dir, f), out)
    print("made", out, sum(p.numel() for p in model.parameters()) / 1e9, "B parameters", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
