"""Random-weight models made with HF transformers on the GPU, saved as safetensors, with HF's own greedy
continuations as the reference (for `npm run test:gpu`).

  qwen3-0.6b   Qwen3-0.6B shapes (28 layers, 16/8 heads, head_dim 128, tied embeddings), bf16
  llama-1b     Llama-3.2-1B shapes (16 layers, 32/8 heads, head_dim 64, llama3 rope scaling), bf16
  qwen3-small  a small Qwen3 (head_dim 64) for the CPU-vs-CUDA logits comparison, bf16
  odd-heads    a tiny Qwen3 with 3 attention heads, which no tensor-parallel size above 1 divides

The weights are saved in bf16; the references run those same (bf16-rounded) weights in float32 in a
freshly built model, because HF's bf16 arithmetic itself strays from the exact result by several
percent on these shapes (measured: 6% relative on the logits of a 3-layer Llama-3.2-1B-shaped model).
Each model directory gets reference.json: 4 prompts of random token ids, HF's greedy 32-token
continuation of each (bf16, SDPA) and, at every generated step, the 20 most likely token ids with
their logits; teacher-<i>.bin holds HF's logits [32, vocab] (float32) of the 32 positions that predict the
continuation, from one forward pass over prompt + continuation.
Usage: python3 make_models.py OUT_DIR TOKENIZER_DIR
"""
import json
import os
import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

MODELS = {
    "qwen3-0.6b": (Qwen3ForCausalLM, Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                                                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                                                 rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)),
    "llama-1b": (LlamaForCausalLM, LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                               num_attention_heads=32, num_key_value_heads=8, head_dim=64, max_position_embeddings=131072,
                                               rms_norm_eps=1e-5, tie_word_embeddings=True,
                                               rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                                               rope_theta=500000.0)),
    "qwen3-small": (Qwen3ForCausalLM, Qwen3Config(vocab_size=2048, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                                  num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=4096,
                                                  rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)),
    "odd-heads": (Qwen3ForCausalLM, Qwen3Config(vocab_size=2048, hidden_size=192, intermediate_size=512, num_hidden_layers=2,
                                                num_attention_heads=3, num_key_value_heads=1, head_dim=64, max_position_embeddings=4096,
                                                rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)),
}


def main(out, tok_dir):
    for name, (cls, cfg) in MODELS.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = cls(cfg).to(torch.bfloat16).eval()
        model.config._attn_implementation = "sdpa"
        model.save_pretrained(d, safe_serialization=True)
        with torch.device("cuda"):
            ref = cls(cfg).to(torch.float32).eval()
        ref.load_state_dict({k: v.to(torch.float32) for k, v in model.state_dict().items()})
        ref.config._attn_implementation = "sdpa"
        del model
        torch.cuda.empty_cache()
        model = ref
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tok_dir, f), d)
        g = torch.Generator().manual_seed(1)
        prompts = [torch.randint(10, cfg.vocab_size, (n,), generator=g).tolist() for n in (8, 32, 100, 300)]
        refs = []
        with torch.no_grad():
            for p in prompts:
                ids = torch.tensor([p], device="cuda")
                o = model.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0,
                                   output_scores=True, return_dict_in_generate=True)
                cont = o.sequences[0, len(p):].tolist()
                top = []
                for s in o.scores:
                    v, i = torch.topk(s[0].float(), 20)
                    top.append([[int(a), float(b)] for a, b in zip(i.tolist(), v.tolist())])
                # teacher-forced logits of the whole sequence (one forward), for a direct numeric comparison
                full = torch.tensor([p + cont], device="cuda")
                logits = model(full).logits[0, len(p) - 1 : len(p) + 31].float().cpu().numpy()
                logits.astype("<f4").tofile(os.path.join(d, f"teacher-{len(refs)}.bin"))
                refs.append({"prompt": p, "continuation": cont, "top": top})
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump({"model": name, "source": f"transformers {__import__('transformers').__version__}, bf16 weights run in float32", "greedy": refs}, f)
        print("made", d, flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
