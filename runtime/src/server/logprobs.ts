/** Logprobs in the two OpenAI response shapes. */
import type { TokenLogprob } from '../engine/engine.ts';
import type { Tokenizer } from '../model/tokenizer.ts';

const tokenText = (tok: Tokenizer, id: number) => tok.decode([id], { skipSpecial: false });

/** /v1/completions: {tokens, token_logprobs, top_logprobs, text_offset}. */
export function completionLogprobs(tok: Tokenizer, lps: TokenLogprob[], startOffset: number) {
  const tokens: string[] = [];
  const tokenLogprobs: number[] = [];
  const top: Record<string, number>[] = [];
  const offsets: number[] = [];
  let offset = startOffset;
  for (const lp of lps) {
    const text = tokenText(tok, lp.token);
    tokens.push(text);
    tokenLogprobs.push(lp.logprob);
    const entry: Record<string, number> = {};
    for (const t of lp.top) entry[tokenText(tok, t.token)] ??= t.logprob;
    top.push(entry);
    offsets.push(offset);
    offset += text.length;
  }
  return { tokens, token_logprobs: tokenLogprobs, top_logprobs: top, text_offset: offsets };
}

/** /v1/chat/completions: {content: [{token, logprob, bytes, top_logprobs}]}. */
export function chatLogprobs(tok: Tokenizer, lps: TokenLogprob[]) {
  const one = (id: number, logprob: number) => {
    const token = tokenText(tok, id);
    return { token, logprob, bytes: [...Buffer.from(token, 'utf8')] };
  };
  return {
    content: lps.map((lp) => ({
      ...one(lp.token, lp.logprob),
      top_logprobs: lp.top.map((t) => one(t.token, t.logprob)),
    })),
  };
}
