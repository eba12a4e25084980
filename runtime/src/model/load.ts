/**
 * Resolves `--model` to everything the runtime needs: the config, the weight manifest for the native
 * loader, the tokenizer and the chat template. Accepts a Hugging Face model directory (config.json,
 * safetensors, tokenizer.json) or a GGUF file (or a directory holding exactly one).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ChatTemplate } from './chat-template.ts';
import { configFromGguf, configFromHf, type ModelConfig, validateConfig } from './config.ts';
import { ModelLoadError } from './errors.ts';
import { readGguf } from './gguf.ts';
import { readSafetensorsDir } from './safetensors.ts';
import { type Tokenizer, tokenizerFromGguf, tokenizerFromHf } from './tokenizer.ts';
import { manifestFromGguf, manifestFromSafetensors, type TensorEntry } from './weights.ts';

export interface LoadedModel {
  /** where it came from (file or directory) */
  path: string;
  /** a default served name: the directory or file name without extension */
  name: string;
  format: 'gguf' | 'safetensors';
  config: ModelConfig;
  tensors: TensorEntry[];
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate | undefined;
}

function readJson(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ModelLoadError(path, `cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new ModelLoadError(path, 'not valid JSON');
  }
}

function optionalJson(path: string): Record<string, unknown> {
  return existsSync(path) ? readJson(path) : {};
}

function loadGguf(path: string): LoadedModel {
  const f = readGguf(path);
  const config = configFromGguf(f);
  validateConfig(config, path);
  const tensors = manifestFromGguf(config, f);
  const tokenizer = tokenizerFromGguf(f);
  const tpl = tokenizer.info.chatTemplate;
  return {
    path,
    name: basename(path).replace(/\.gguf$/i, ''),
    format: 'gguf',
    config,
    tensors,
    tokenizer,
    chatTemplate: tpl ? new ChatTemplate(tpl, tokenizer.info) : undefined,
  };
}

function loadHfDir(dir: string): LoadedModel {
  const config = configFromHf(readJson(join(dir, 'config.json')), join(dir, 'config.json'));
  validateConfig(config, dir);
  const tensors = manifestFromSafetensors(config, readSafetensorsDir(dir), dir);
  const tokPath = join(dir, 'tokenizer.json');
  if (!existsSync(tokPath)) throw new ModelLoadError(dir, 'missing tokenizer.json');
  const generation = optionalJson(join(dir, 'generation_config.json'));
  const cfgJson = readJson(join(dir, 'config.json'));
  const eosIds = [generation.eos_token_id, cfgJson.eos_token_id]
    .flat()
    .filter((v): v is number => typeof v === 'number');
  const tokenizer = tokenizerFromHf(readJson(tokPath), optionalJson(join(dir, 'tokenizer_config.json')), eosIds, dir);
  let template = tokenizer.info.chatTemplate;
  const jinja = join(dir, 'chat_template.jinja');
  if (!template && existsSync(jinja)) template = readFileSync(jinja, 'utf8');
  return {
    path: dir,
    name: basename(dir),
    format: 'safetensors',
    config,
    tensors,
    tokenizer,
    chatTemplate: template ? new ChatTemplate(template, tokenizer.info) : undefined,
  };
}

export function loadModel(path: string): LoadedModel {
  if (!existsSync(path)) throw new ModelLoadError(path, 'no such file or directory');
  if (statSync(path).isFile()) return loadGguf(path);
  if (existsSync(join(path, 'config.json'))) return loadHfDir(path);
  const ggufs = readdirSync(path).filter((f) => f.toLowerCase().endsWith('.gguf'));
  if (ggufs.length === 1) return loadGguf(join(path, ggufs[0]!));
  if (ggufs.length > 1) throw new ModelLoadError(path, `holds several GGUF files (${ggufs.join(', ')}): pass one`);
  throw new ModelLoadError(path, 'not a model: expected config.json + *.safetensors, or a .gguf file');
}
