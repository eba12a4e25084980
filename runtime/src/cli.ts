/**
 * The `pagoda` command.
 *   pagoda serve [flags]                 OpenAI-compatible server (see `pagoda serve --help`)
 *   pagoda generate --prompt TEXT [...]  one-off generation printed to stdout
 * Errors print one line naming the problem and exit non-zero; no stack traces for user errors.
 */
import { parseArgs } from 'node:util';
import { ConfigError, parseServeArgs, SERVE_FLAGS, serveHelp } from './config.ts';
import { EngineError } from './engine/engine.ts';
import { defaultSamplingParams } from './engine/sampling-params.ts';
import { ModelLoadError } from './model/errors.ts';
import { DownloadError, downloadModel } from './model/hf-download.ts';
import { cudaUsable } from './native/index.ts';
import { startEngine } from './runtime.ts';
import { serve } from './server/server.ts';

const log = (msg: string) => console.error(`pagoda: ${msg}`);

const USAGE = `Usage: pagoda <command> [flags]

Commands:
  serve       Serve a model over an OpenAI-compatible HTTP API (pagoda serve --help)
  generate    Generate a completion for one prompt and print it (pagoda generate --help)
  download    Fetch a model from Hugging Face into a folder (pagoda download --help)
`;

const DOWNLOAD_HELP = `Usage: pagoda download --repo ORG/NAME [--revision REV] --dir PATH

Fetches config, tokenizer and safetensors weights (with their index) of a Hugging Face model
repository into PATH, ready for \`pagoda serve --model PATH\`. Files are written atomically; an
interrupted download resumes; files already complete are kept.

  --repo ORG/NAME     Repository id (required).
  --revision REV      Branch, tag or commit (default main).
  --dir PATH          Target folder (required; created if missing).
  --endpoint URL      Hub address [env HF_ENDPOINT, default https://huggingface.co].
Environment: HF_TOKEN (sent as a bearer token, for gated or private repositories).`;

const GENERATE_HELP = `Usage: pagoda generate --prompt TEXT [flags]

  --prompt TEXT          The prompt (required).
  --chat                 Wrap the prompt as a user message with the model's chat template.
  --max-tokens N         Tokens to generate (default 64).
  --temperature F        0 = greedy (default 0).
  --top-p F, --top-k N   Sampling filters.
  --seed N               Seed for sampling.
Any \`pagoda serve\` flag that shapes the engine also applies (--model, --device, --threads, ...).`;

async function generate(argv: string[]): Promise<void> {
  const own = {
    prompt: { type: 'string' },
    chat: { type: 'boolean' },
    'max-tokens': { type: 'string' },
    temperature: { type: 'string' },
    'top-p': { type: 'string' },
    'top-k': { type: 'string' },
    seed: { type: 'string' },
  } as const;
  const ownNames = new Set(Object.keys(own));
  // Split argv into generate's own flags and engine flags (handed to the serve parser).
  const mine: string[] = [];
  const engineArgs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.replace(/^--/, '').split('=')[0]!;
    const target = ownNames.has(name) ? mine : engineArgs;
    target.push(a);
    const takesValue = ownNames.has(name) ? name !== 'chat' : SERVE_FLAGS.some((f) => f.flag === name && f.value);
    if (takesValue && !a.includes('=') && i + 1 < argv.length) target.push(argv[++i]!);
  }
  const { values } = parseArgs({ args: mine, options: own, strict: true });
  if (!values.prompt) throw new ConfigError('--prompt is required (pagoda generate --help)');
  const cfg = parseServeArgs(engineArgs, process.env, cudaUsable());
  const { engine } = await startEngine(cfg, log);
  const tok = engine.model.tokenizer;
  let prompt: number[];
  if (values.chat) {
    if (!engine.model.chatTemplate) throw new ConfigError('--chat: this model has no chat template');
    prompt = tok.encode(engine.model.chatTemplate.render([{ role: 'user', content: values.prompt }]), {
      addBos: false,
    });
  } else {
    prompt = tok.encode(values.prompt);
  }
  const num = (name: string, v: string | undefined, fallback: number) => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new ConfigError(`--${name} must be a number, got ${JSON.stringify(v)}`);
    return n;
  };
  const params = defaultSamplingParams({
    maxTokens: num('max-tokens', values['max-tokens'], 64),
    temperature: num('temperature', values.temperature, 0),
    topP: num('top-p', values['top-p'], 1),
    topK: num('top-k', values['top-k'], 0),
    seed: values.seed === undefined ? undefined : num('seed', values.seed, 0),
  });
  const t0 = performance.now();
  let n = 0;
  for await (const ev of engine.generate({ prompt, params })) {
    process.stdout.write(ev.textDelta);
    n += ev.tokenIds.length;
  }
  const dt = (performance.now() - t0) / 1000;
  process.stdout.write('\n');
  log(`${n} tokens in ${dt.toFixed(2)} s (${(n / dt).toFixed(1)} tokens/s, prompt ${prompt.length} tokens)`);
  engine.close();
}

async function download(argv: string[]): Promise<void> {
  const options = {
    repo: { type: 'string' },
    revision: { type: 'string' },
    dir: { type: 'string' },
    endpoint: { type: 'string' },
  } as const;
  let values: { repo?: string; revision?: string; dir?: string; endpoint?: string };
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true }));
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}. Run \`pagoda download --help\` for the flags.`);
  }
  if (!values.repo) throw new ConfigError('--repo is required (pagoda download --help)');
  if (!values.dir) throw new ConfigError('--dir is required (pagoda download --help)');
  await downloadModel({
    repo: values.repo,
    revision: values.revision ?? 'main',
    dir: values.dir,
    ...(values.endpoint ? { endpoint: values.endpoint } : {}),
    log,
  });
}

export async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(USAGE);
      return;
    }
    if (command === 'serve') {
      if (rest.includes('--help') || rest.includes('-h')) {
        console.log(serveHelp());
        return;
      }
      await serve(parseServeArgs(rest, process.env, cudaUsable()), log);
      return;
    }
    if (command === 'generate') {
      if (rest.includes('--help') || rest.includes('-h')) {
        console.log(GENERATE_HELP);
        return;
      }
      await generate(rest);
      return;
    }
    if (command === 'download') {
      if (rest.includes('--help') || rest.includes('-h')) {
        console.log(DOWNLOAD_HELP);
        return;
      }
      await download(rest);
      return;
    }
    log(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
    process.exitCode = 2;
  } catch (e) {
    if (e instanceof ConfigError) {
      log(e.message);
      process.exitCode = 2;
    } else if (e instanceof ModelLoadError || e instanceof EngineError || e instanceof DownloadError) {
      log(e.message);
      process.exitCode = 1;
    } else if (e instanceof Error && e.message.startsWith("Pagoda's native engine")) {
      log(e.message);
      process.exitCode = 1;
    } else {
      throw e;
    }
  }
}

if (import.meta.main) {
  await main(process.argv.slice(2));
}
