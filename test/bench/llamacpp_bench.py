"""llama.cpp decode throughput on a GGUF file: single stream and N streams batched in one llama_decode.

Usage: python llamacpp_bench.py MODEL.gguf THREADS STREAMS NEW_TOKENS PROMPT_IDS_JSON
Prints one JSON line: {"single": tok/s, "multi": tok/s, "streams": N}. Decode only (prefill excluded),
greedy, ignoring end of sequence, as the Pagoda figures it is printed beside.
"""
import ctypes
import json
import sys
import time

import llama_cpp
import numpy as np


def main(path, threads, streams, new_tokens, prompt):
    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(path.encode(), mp)
    vocab_n = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = 4096
    cp.n_batch = 1024
    cp.n_seq_max = max(streams, 1)
    cp.n_threads = threads
    cp.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, cp)

    def run(n_seq):
        mem = llama_cpp.llama_get_memory(ctx)
        llama_cpp.llama_memory_clear(mem, True)
        batch = llama_cpp.llama_batch_init(max(len(prompt) * n_seq, n_seq), 0, n_seq)
        # prefill every sequence
        k = 0
        for s in range(n_seq):
            for i, t in enumerate(prompt):
                batch.token[k] = t
                batch.pos[k] = i
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = s
                batch.logits[k] = i == len(prompt) - 1
                k += 1
        batch.n_tokens = k
        assert llama_cpp.llama_decode(ctx, batch) == 0
        last = [(s + 1) * len(prompt) - 1 for s in range(n_seq)]
        t0 = time.perf_counter()
        for step in range(new_tokens):
            nxt = []
            for s in range(n_seq):
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, last[s]), shape=(vocab_n,))
                nxt.append(int(np.argmax(logits)))
            for s in range(n_seq):
                batch.token[s] = nxt[s]
                batch.pos[s] = len(prompt) + step
                batch.n_seq_id[s] = 1
                batch.seq_id[s][0] = s
                batch.logits[s] = True
            batch.n_tokens = n_seq
            assert llama_cpp.llama_decode(ctx, batch) == 0
            last = list(range(n_seq))
        dt = time.perf_counter() - t0
        llama_cpp.llama_batch_free(batch)
        return n_seq * new_tokens / dt

    run(1)  # warm-up
    single = run(1)
    multi = run(streams)
    print(json.dumps({"single": single, "multi": multi, "streams": streams, "version": llama_cpp.__version__}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5]))
