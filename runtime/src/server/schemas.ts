/**
 * Request bodies of the OpenAI-compatible routes as TypeBox schemas: validation and types in one place.
 * Ranges follow OpenAI's API and vLLM's extensions (top_k, min_p, repetition_penalty, ...).
 */
import { type Static, Type as T } from 'typebox';

const Nullable = <S extends Parameters<typeof T.Union>[0][number]>(s: S) => T.Union([s, T.Null()]);

export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_LENGTH = 256;

const StopSchema = Nullable(
  T.Union([
    T.String({ maxLength: MAX_STOP_LENGTH }),
    T.Array(T.String({ minLength: 1, maxLength: MAX_STOP_LENGTH }), { maxItems: MAX_STOP_STRINGS }),
  ]),
);

const StreamOptions = Nullable(
  T.Object({ include_usage: T.Optional(Nullable(T.Boolean())), continuous_usage_stats: T.Optional(T.Boolean()) }),
);

/** Fields shared by completions and chat completions. */
const SamplingFields = {
  model: T.Optional(Nullable(T.String({ maxLength: 512 }))),
  max_tokens: T.Optional(Nullable(T.Integer({ minimum: 1 }))),
  temperature: T.Optional(Nullable(T.Number({ minimum: 0, maximum: 2 }))),
  top_p: T.Optional(Nullable(T.Number({ exclusiveMinimum: 0, maximum: 1 }))),
  top_k: T.Optional(Nullable(T.Integer({ minimum: -1, maximum: 1_000_000 }))),
  min_p: T.Optional(Nullable(T.Number({ minimum: 0, maximum: 1 }))),
  n: T.Optional(Nullable(T.Integer({ minimum: 1, maximum: 16 }))),
  stream: T.Optional(Nullable(T.Boolean())),
  stream_options: T.Optional(StreamOptions),
  stop: T.Optional(StopSchema),
  stop_token_ids: T.Optional(Nullable(T.Array(T.Integer({ minimum: 0 }), { maxItems: 64 }))),
  presence_penalty: T.Optional(Nullable(T.Number({ minimum: -2, maximum: 2 }))),
  frequency_penalty: T.Optional(Nullable(T.Number({ minimum: -2, maximum: 2 }))),
  repetition_penalty: T.Optional(Nullable(T.Number({ exclusiveMinimum: 0, maximum: 10 }))),
  seed: T.Optional(Nullable(T.Integer({ minimum: -(2 ** 53) + 1, maximum: 2 ** 53 - 1 }))),
  ignore_eos: T.Optional(Nullable(T.Boolean())),
  min_tokens: T.Optional(Nullable(T.Integer({ minimum: 0 }))),
  include_stop_str_in_output: T.Optional(Nullable(T.Boolean())),
  skip_special_tokens: T.Optional(Nullable(T.Boolean())),
  user: T.Optional(Nullable(T.String({ maxLength: 1024 }))),
  logit_bias: T.Optional(Nullable(T.Record(T.String(), T.Number()))),
};

const TokenIds = T.Array(T.Integer({ minimum: 0 }), { minItems: 1, maxItems: 1_000_000 });

export const CompletionRequest = T.Object(
  {
    ...SamplingFields,
    prompt: T.Union([
      T.String(),
      T.Array(T.String(), { minItems: 1, maxItems: 64 }),
      TokenIds,
      T.Array(TokenIds, { minItems: 1, maxItems: 64 }),
    ]),
    logprobs: T.Optional(Nullable(T.Integer({ minimum: 0, maximum: 20 }))),
    echo: T.Optional(Nullable(T.Boolean())),
    best_of: T.Optional(Nullable(T.Integer({ minimum: 1, maximum: 16 }))),
    suffix: T.Optional(Nullable(T.String())),
  },
  { additionalProperties: true },
);
export type CompletionRequest = Static<typeof CompletionRequest>;

const TextPart = T.Object({ type: T.Literal('text'), text: T.String() });
const MessageContent = Nullable(T.Union([T.String(), T.Array(TextPart, { maxItems: 256 })]));

const Message = T.Object(
  {
    role: T.Union([
      T.Literal('system'),
      T.Literal('developer'),
      T.Literal('user'),
      T.Literal('assistant'),
      T.Literal('tool'),
    ]),
    content: T.Optional(MessageContent),
    name: T.Optional(T.String({ maxLength: 256 })),
  },
  { additionalProperties: true },
);

export const ChatCompletionRequest = T.Object(
  {
    ...SamplingFields,
    messages: T.Array(Message, { minItems: 1, maxItems: 4096 }),
    max_completion_tokens: T.Optional(Nullable(T.Integer({ minimum: 1 }))),
    logprobs: T.Optional(Nullable(T.Boolean())),
    top_logprobs: T.Optional(Nullable(T.Integer({ minimum: 0, maximum: 20 }))),
    add_generation_prompt: T.Optional(Nullable(T.Boolean())),
    response_format: T.Optional(Nullable(T.Object({ type: T.String() }, { additionalProperties: true }))),
    tools: T.Optional(Nullable(T.Array(T.Any(), { maxItems: 128 }))),
    tool_choice: T.Optional(Nullable(T.Any())),
  },
  { additionalProperties: true },
);
export type ChatCompletionRequest = Static<typeof ChatCompletionRequest>;

export const TokenizeRequest = T.Union([
  T.Object({
    model: T.Optional(Nullable(T.String())),
    prompt: T.String(),
    add_special_tokens: T.Optional(T.Boolean()),
  }),
  T.Object({
    model: T.Optional(Nullable(T.String())),
    messages: T.Array(Message, { minItems: 1, maxItems: 4096 }),
    add_generation_prompt: T.Optional(T.Boolean()),
  }),
]);
export type TokenizeRequest = Static<typeof TokenizeRequest>;

export const DetokenizeRequest = T.Object({
  model: T.Optional(Nullable(T.String())),
  tokens: T.Array(T.Integer({ minimum: 0 }), { maxItems: 1_000_000 }),
});
export type DetokenizeRequest = Static<typeof DetokenizeRequest>;
