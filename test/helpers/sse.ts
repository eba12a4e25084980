/** A small streaming client for load tests: POSTs a streaming request and reads its SSE events. */

export interface StreamResult {
  status: number;
  /** parsed `data:` payloads, `[DONE]` excluded */
  events: Record<string, unknown>[];
  done: boolean;
  text: string;
  error?: string;
}

export interface StreamOptions {
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** called for every parsed event; return false to stop reading (the connection is then cut) */
  onEvent?: (event: Record<string, unknown>, index: number) => boolean | undefined;
}

export async function streamCompletion(
  url: string,
  body: Record<string, unknown>,
  opts: StreamOptions = {},
): Promise<StreamResult> {
  const ctl = new AbortController();
  opts.signal?.addEventListener('abort', () => ctl.abort(), { once: true });
  const result: StreamResult = { status: 0, events: [], done: false, text: '' };
  try {
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...opts.headers },
      body: JSON.stringify({ ...body, stream: true }),
      signal: ctl.signal,
    });
    result.status = r.status;
    if (r.status !== 200 || !r.body) {
      result.error = await r.text();
      return result;
    }
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of r.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf('\n\n');
        if (!frame.startsWith('data: ')) continue;
        const data = frame.slice(6);
        if (data === '[DONE]') {
          result.done = true;
          continue;
        }
        const ev = JSON.parse(data) as Record<string, unknown>;
        result.events.push(ev);
        const choices = ev.choices as { text?: string }[] | undefined;
        result.text += choices?.[0]?.text ?? '';
        if (opts.onEvent?.(ev, result.events.length - 1) === false) {
          ctl.abort();
          return result;
        }
      }
    }
  } catch (e) {
    if (!ctl.signal.aborted) result.error = (e as Error).message;
  }
  return result;
}
