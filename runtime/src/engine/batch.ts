/**
 * Flattens a scheduler decision into the native step's typed arrays: token ids, positions, per-sequence
 * query offsets and context lengths, block tables, slot mapping, logit rows and per-row sampling inputs.
 */
import type { StepBatch } from '../native/index.ts';
import { usesPenalties } from './sampling-params.ts';
import type { ScheduledSeq } from './scheduler.ts';

export interface BuiltBatch {
  batch: StepBatch;
  /** the sequences that get a new token, in logit-row order */
  sampled: ScheduledSeq[];
}

export function buildBatch(scheduled: readonly ScheduledSeq[], blockSize: number): BuiltBatch {
  const S = scheduled.length;
  let T = 0;
  let maxBlocks = 1;
  for (const s of scheduled) {
    T += s.numTokens;
    maxBlocks = Math.max(maxBlocks, s.seq.blockTable.length);
  }
  const tokenIds = new Int32Array(T);
  const positions = new Int32Array(T);
  const slotMapping = new Int32Array(T);
  const queryStart = new Int32Array(S + 1);
  const contextLens = new Int32Array(S);
  const blockTables = new Int32Array(S * maxBlocks);
  const sampled: ScheduledSeq[] = [];
  const rows: number[] = [];
  let t = 0;
  scheduled.forEach((s, i) => {
    const { seq } = s;
    queryStart[i] = t;
    const start = seq.numComputed;
    for (let j = 0; j < s.numTokens; j++, t++) {
      const pos = start + j;
      tokenIds[t] = seq.tokens[pos]!;
      positions[t] = pos;
      slotMapping[t] = seq.blockTable[Math.floor(pos / blockSize)]! * blockSize + (pos % blockSize);
    }
    contextLens[i] = start + s.numTokens;
    blockTables.set(seq.blockTable, i * maxBlocks);
    if (s.samples) {
      sampled.push(s);
      rows.push(t - 1);
    }
  });
  queryStart[S] = t;

  const R = sampled.length;
  const temperature = new Float32Array(R);
  const topP = new Float32Array(R);
  const topK = new Int32Array(R);
  const minP = new Float32Array(R);
  const presencePenalty = new Float32Array(R);
  const frequencyPenalty = new Float32Array(R);
  const repetitionPenalty = new Float32Array(R);
  const seed = new Uint32Array(2 * R);
  const sampleStep = new Int32Array(R);
  const outputOffsets = new Int32Array(R + 1);
  const contextOffsets = new Int32Array(R + 1);
  const outputTokens: number[] = [];
  const contextTokens: number[] = [];
  const biasOffsets = new Int32Array(R + 1);
  const biasTokens: number[] = [];
  const biasValues: number[] = [];
  let numTopLogprobs = 0;
  sampled.forEach(({ seq }, r) => {
    const p = seq.params;
    temperature[r] = p.temperature;
    topP[r] = p.topP;
    topK[r] = p.topK;
    minP[r] = p.minP;
    presencePenalty[r] = p.presencePenalty;
    frequencyPenalty[r] = p.frequencyPenalty;
    repetitionPenalty[r] = p.repetitionPenalty;
    seed[2 * r] = seq.seedLo;
    seed[2 * r + 1] = seq.seedHi;
    sampleStep[r] = seq.numOutputTokens;
    if (usesPenalties(p)) {
      if (p.presencePenalty !== 0 || p.frequencyPenalty !== 0) outputTokens.push(...seq.outputTokens);
      if (p.repetitionPenalty !== 1) contextTokens.push(...seq.tokens);
    }
    outputOffsets[r + 1] = outputTokens.length;
    contextOffsets[r + 1] = contextTokens.length;
    for (const [token, bias] of p.logitBias) {
      biasTokens.push(token);
      biasValues.push(bias);
    }
    if (sampleStep[r]! < p.minTokens)
      for (const token of seq.endingTokens) {
        biasTokens.push(token);
        biasValues.push(Number.NEGATIVE_INFINITY);
      }
    biasOffsets[r + 1] = biasTokens.length;
    if (p.logprobs !== undefined) numTopLogprobs = Math.max(numTopLogprobs, p.logprobs);
  });

  return {
    sampled,
    batch: {
      tokenIds,
      positions,
      queryStart,
      contextLens,
      blockTables,
      maxBlocksPerSeq: maxBlocks,
      slotMapping,
      logitRows: Int32Array.from(rows),
      numTopLogprobs,
      temperature,
      topP,
      topK,
      minP,
      presencePenalty,
      frequencyPenalty,
      repetitionPenalty,
      seed,
      sampleStep,
      outputOffsets,
      outputTokens: Int32Array.from(outputTokens),
      contextOffsets,
      contextTokens: Int32Array.from(contextTokens),
      // omitted when no row has a bias: the native step then skips them altogether
      ...(biasTokens.length > 0
        ? { biasOffsets, biasTokens: Int32Array.from(biasTokens), biasValues: Float32Array.from(biasValues) }
        : {}),
    },
  };
}
