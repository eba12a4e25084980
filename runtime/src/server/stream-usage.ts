/**
 * Token usage in streamed responses. `stream_options.include_usage` adds a last chunk with the totals
 * (every other chunk says `usage: null`, as OpenAI's do); with vLLM's `continuous_usage_stats` as well,
 * every chunk carries the counts so far instead of null.
 */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export class StreamUsage {
  completionTokens = 0;
  readonly include: boolean;
  private readonly continuous: boolean;
  private readonly promptTokens: number;

  constructor(
    options: { include_usage?: boolean | null; continuous_usage_stats?: boolean } | null | undefined,
    promptTokens: number,
  ) {
    this.promptTokens = promptTokens;
    this.include = options?.include_usage === true;
    this.continuous = this.include && options?.continuous_usage_stats === true;
  }

  totals(): Usage {
    return {
      prompt_tokens: this.promptTokens,
      completion_tokens: this.completionTokens,
      total_tokens: this.promptTokens + this.completionTokens,
    };
  }

  /** The `usage` field of an ordinary chunk (when `include`). */
  forChunk(): Usage | null {
    return this.continuous ? this.totals() : null;
  }
}
