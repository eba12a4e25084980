/**
 * Text ↔ token ids. Built from a Hugging Face tokenizer.json (+ tokenizer_config.json) or from the
 * tokenizer a GGUF file embeds (BPE vocab + merges, rebuilt as a tokenizer.json for the same library).
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { ModelLoadError } from './errors.ts';
import { type GgufFile, metaArray, metaString } from './gguf.ts';

export interface TokenizerInfo {
  bosTokenId: number | undefined;
  /** ids that end generation (unless ignore_eos) */
  eosTokenIds: number[];
  /** prepend BOS when encoding a raw prompt */
  addBos: boolean;
  chatTemplate: string | undefined;
  /** strings of special tokens the chat template refers to */
  bosToken: string;
  eosToken: string;
}

export class Tokenizer {
  readonly info: TokenizerInfo;
  private readonly hf: HfTokenizer;
  private readonly specialIds: Set<number>;

  constructor(json: Record<string, unknown>, config: Record<string, unknown>, info: TokenizerInfo) {
    this.hf = new HfTokenizer(json, config);
    this.info = info;
    const added = (json.added_tokens ?? []) as { id: number; special?: boolean }[];
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
  }

  /** Encodes text; special-token strings in it are recognised (as chat templates need). */
  encode(text: string, opts: { addBos?: boolean } = {}): number[] {
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    const bos = this.info.bosTokenId;
    if ((opts.addBos ?? this.info.addBos) && bos !== undefined && ids[0] !== bos) return [bos, ...ids];
    return ids;
  }

  decode(ids: readonly number[], opts: { skipSpecial?: boolean } = {}): string {
    if (ids.length === 0) return '';
    return this.hf.decode([...ids], {
      skip_special_tokens: opts.skipSpecial ?? true,
      clean_up_tokenization_spaces: false,
    });
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  tokenText(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  tokenId(text: string): number | undefined {
    return this.hf.token_to_id(text);
  }
}

/** From tokenizer.json and tokenizer_config.json of a Hugging Face model directory. */
export function tokenizerFromHf(
  json: Record<string, unknown>,
  config: Record<string, unknown>,
  eosFromGeneration: number[],
  path: string,
): Tokenizer {
  const tokenString = (v: unknown): string | undefined =>
    typeof v === 'string'
      ? v
      : typeof v === 'object' && v && 'content' in v
        ? String((v as { content: unknown }).content)
        : undefined;
  const added = (json.added_tokens ?? []) as { id: number; content: string }[];
  const model = (json.model ?? {}) as { vocab?: Record<string, number> };
  const idOf = (s: string | undefined): number | undefined => {
    if (s === undefined) return undefined;
    return added.find((t) => t.content === s)?.id ?? model.vocab?.[s];
  };
  const bosToken = tokenString(config.bos_token);
  const eosToken = tokenString(config.eos_token);
  const eos = new Set(eosFromGeneration);
  const eosId = idOf(eosToken);
  if (eosId !== undefined) eos.add(eosId);
  if (eos.size === 0)
    throw new ModelLoadError(
      path,
      'no end-of-sequence token (tokenizer_config.json eos_token or generation_config.json)',
    );
  let template = config.chat_template;
  if (Array.isArray(template))
    template = (template as { name: string; template: string }[]).find((t) => t.name === 'default')?.template;
  return new Tokenizer(json, config, {
    bosTokenId: idOf(bosToken),
    eosTokenIds: [...eos],
    addBos: config.add_bos_token === true,
    chatTemplate: typeof template === 'string' ? template : undefined,
    bosToken: bosToken ?? '',
    eosToken: eosToken ?? '',
  });
}

// Pre-tokenizer splits per `tokenizer.ggml.pre`, as the original tokenizer.json of each family has them.
const GPT2_BYTE_LEVEL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function splitThenBytes(regex: string) {
  return {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false },
      { ...GPT2_BYTE_LEVEL, use_regex: false },
    ],
  };
}

const PRE_TOKENIZERS: Record<string, unknown> = {
  default: GPT2_BYTE_LEVEL,
  gpt2: GPT2_BYTE_LEVEL,
  smollm: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, GPT2_BYTE_LEVEL] },
  'llama-bpe': splitThenBytes(LLAMA3_SPLIT),
  llama3: splitThenBytes(LLAMA3_SPLIT),
  qwen2: splitThenBytes(QWEN2_SPLIT),
};

const TOKEN_TYPE_CONTROL = 3;
const TOKEN_TYPE_USER_DEFINED = 4;

/** Rebuilds a BPE tokenizer.json from GGUF metadata (tokenizer.ggml.model = gpt2). */
export function tokenizerFromGguf(f: GgufFile): Tokenizer {
  const model = metaString(f, 'tokenizer.ggml.model');
  if (model !== 'gpt2') {
    throw new ModelLoadError(
      f.path,
      `unsupported GGUF tokenizer ${JSON.stringify(model)} (supported: gpt2-style BPE); serve the Hugging Face directory instead`,
    );
  }
  const pre = metaString(f, 'tokenizer.ggml.pre') ?? 'default';
  const preTokenizer = PRE_TOKENIZERS[pre];
  if (!preTokenizer) {
    throw new ModelLoadError(
      f.path,
      `unsupported GGUF pre-tokenizer ${JSON.stringify(pre)} (supported: ${Object.keys(PRE_TOKENIZERS).join(', ')})`,
    );
  }
  const tokens = metaArray(f, 'tokenizer.ggml.tokens') as string[] | undefined;
  const merges = metaArray(f, 'tokenizer.ggml.merges') as string[] | undefined;
  if (!tokens || !merges) throw new ModelLoadError(f.path, 'GGUF has no tokenizer (tokenizer.ggml.tokens / merges)');
  const types = (metaArray(f, 'tokenizer.ggml.token_type') as number[] | undefined) ?? [];
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => {
    vocab[t] = i;
  });
  const added = tokens
    .map((content, id) => ({ content, id, type: types[id] ?? 1 }))
    .filter((t) => t.type === TOKEN_TYPE_CONTROL || t.type === TOKEN_TYPE_USER_DEFINED)
    .map((t) => ({
      id: t.id,
      content: t.content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: t.type === TOKEN_TYPE_USER_DEFINED,
      special: t.type === TOKEN_TYPE_CONTROL,
    }));
  const json = {
    version: '1.0',
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const id = (key: string): number | undefined => {
    const v = f.metadata.get(key);
    return typeof v === 'number' ? v : undefined;
  };
  const bos = id('tokenizer.ggml.bos_token_id');
  const eos = new Set<number>();
  for (const key of ['tokenizer.ggml.eos_token_id', 'tokenizer.ggml.eot_token_id', 'tokenizer.ggml.eom_token_id']) {
    const v = id(key);
    if (v !== undefined) eos.add(v);
  }
  if (eos.size === 0) throw new ModelLoadError(f.path, 'GGUF has no tokenizer.ggml.eos_token_id');
  const addBos = f.metadata.get('tokenizer.ggml.add_bos_token');
  const [firstEos] = eos;
  return new Tokenizer(
    json,
    {},
    {
      bosTokenId: bos,
      eosTokenIds: [...eos],
      addBos: addBos === true,
      chatTemplate: metaString(f, 'tokenizer.chat_template'),
      bosToken: bos !== undefined ? (tokens[bos] ?? '') : '',
      eosToken: firstEos !== undefined ? (tokens[firstEos] ?? '') : '',
    },
  );
}
