/** Chat messages → prompt text, through the model's own Jinja chat template. */
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: string;
  content: string;
  name?: string;
}

export class ChatTemplate {
  private readonly template: Template;
  private readonly specials: { bosToken: string; eosToken: string };
  constructor(source: string, specials: { bosToken: string; eosToken: string }) {
    this.template = new Template(source);
    this.specials = specials;
  }

  render(
    messages: ChatMessage[],
    opts: { addGenerationPrompt?: boolean; extra?: Record<string, unknown> } = {},
  ): string {
    return this.template.render({
      ...opts.extra,
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? true,
      bos_token: this.specials.bosToken,
      eos_token: this.specials.eosToken,
    });
  }
}
