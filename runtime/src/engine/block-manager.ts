/**
 * Paged KV-cache blocks: reference counts, and prefix caching by a chained hash per full block (the
 * hash of the previous block and this block's tokens) confirmed by an exact token comparison.
 *
 * A block enters the cache only once its K/V have been computed (`cacheComputedBlocks`), so a hit never
 * reads a block that a chunked prefill has not written yet. Freed blocks keep their contents and hash
 * until reused. A new block comes from the free blocks that hold no cached prefix first (the most
 * recently freed, whose memory is warm), and only then by evicting the least recently freed cached
 * block (LRU). So no cached prefix is evicted while an empty block is free, and the set of blocks in
 * use stays as small as the load allows (untouched KV memory never becomes resident).
 *
 * Ask before you mutate: canAllocate → allocate, canAppend → append, then free.
 */
import { createHash } from 'node:crypto';
import type { Sequence } from './sequence.ts';

interface Block {
  readonly id: number;
  refCount: number;
  /** chained hash when the block is full and computed, else '' */
  hash: string;
  /** the tokens it holds, for the exact check on a hit */
  tokens: number[];
}

export interface BlockManagerStats {
  numBlocks: number;
  /** blocks referenced by at least one sequence */
  numUsed: number;
  /** free blocks still holding a cached prefix */
  numCachedFree: number;
}

export function chainHash(prev: string, tokens: readonly number[]): string {
  const h = createHash('sha256');
  h.update(prev);
  h.update(new Uint8Array(Int32Array.from(tokens).buffer));
  return h.digest('base64');
}

export class BlockManager {
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  private readonly blocks: Block[];
  /** free blocks holding no cached prefix: a stack, the most recently freed on top */
  private readonly empty: number[] = [];
  /** free blocks holding a cached prefix, in the order they were freed (Map keeps insertion order:
   *  first = least recently used) */
  private readonly cachedFree = new Map<number, true>();
  private readonly byHash = new Map<string, number>();
  /** prefix-cache statistics in tokens, cumulative (as vLLM counts them): tokens of every admitted
   *  sequence, and those of them served from the cache */
  queriedTokens = 0;
  hitTokens = 0;

  constructor(numBlocks: number, blockSize: number, enablePrefixCaching = true) {
    this.blockSize = blockSize;
    this.enablePrefixCaching = enablePrefixCaching;
    this.blocks = Array.from({ length: numBlocks }, (_, id) => ({ id, refCount: 0, hash: '', tokens: [] }));
    for (let i = numBlocks - 1; i >= 0; i--) this.empty.push(i);
  }

  get numBlocks(): number {
    return this.blocks.length;
  }

  get numFreeBlocks(): number {
    return this.empty.length + this.cachedFree.size;
  }

  stats(): BlockManagerStats {
    return {
      numBlocks: this.blocks.length,
      numUsed: this.blocks.length - this.numFreeBlocks,
      numCachedFree: this.cachedFree.size,
    };
  }

  refCount(id: number): number {
    return this.blocks[id]!.refCount;
  }

  blocksFor(numTokens: number): number {
    return Math.ceil(numTokens / this.blockSize);
  }

  /** Full blocks of `tokens` that may come from the cache: never the one holding the last token,
   *  whose logits must be computed. */
  private cacheableBlocks(numTokens: number): number {
    return this.enablePrefixCaching ? Math.floor((numTokens - 1) / this.blockSize) : 0;
  }

  /** The cached blocks a prompt would reuse, in order (no side effects). */
  private lookup(tokens: readonly number[]): number[] {
    const found: number[] = [];
    let prev = '';
    for (let b = 0; b < this.cacheableBlocks(tokens.length); b++) {
      const chunk = tokens.slice(b * this.blockSize, (b + 1) * this.blockSize);
      prev = chainHash(prev, chunk);
      const id = this.byHash.get(prev);
      if (id === undefined) break;
      const blk = this.blocks[id]!;
      if (blk.tokens.length !== chunk.length || blk.tokens.some((t, i) => t !== chunk[i])) break;
      found.push(id);
    }
    return found;
  }

  /** Whether every block of the sequence's tokens can be provided now (cache hits count). */
  canAllocate(seq: Sequence): boolean {
    const hits = this.lookup(seq.tokens);
    const freeHits = hits.filter((id) => this.blocks[id]!.refCount === 0).length;
    const fresh = this.blocksFor(seq.numTokens) - hits.length;
    return fresh <= this.numFreeBlocks - freeHits;
  }

  /** Gives the sequence blocks for all its tokens; cached prefix blocks are shared and their tokens
   *  count as computed. */
  allocate(seq: Sequence): void {
    if (seq.blockTable.length > 0) throw new Error(`sequence ${seq.id} already holds blocks`);
    const hits = this.lookup(seq.tokens);
    if (this.enablePrefixCaching) {
      this.queriedTokens += seq.numTokens;
      this.hitTokens += hits.length * this.blockSize;
    }
    for (const id of hits) {
      const blk = this.blocks[id]!;
      if (blk.refCount === 0) this.cachedFree.delete(id);
      blk.refCount++;
      seq.blockTable.push(id);
    }
    const need = this.blocksFor(seq.numTokens) - hits.length;
    for (let i = 0; i < need; i++) seq.blockTable.push(this.takeFresh());
    seq.numComputed = hits.length * this.blockSize;
    seq.numCachedTokens = seq.numComputed;
  }

  /** Whether the sequence can grow to `numTokens` tokens. */
  canAppend(seq: Sequence, numTokens: number): boolean {
    return this.blocksFor(numTokens) - seq.blockTable.length <= this.numFreeBlocks;
  }

  append(seq: Sequence, numTokens: number): void {
    const need = this.blocksFor(numTokens) - seq.blockTable.length;
    if (need > this.numFreeBlocks) throw new Error(`no free block for sequence ${seq.id}`);
    for (let i = 0; i < need; i++) seq.blockTable.push(this.takeFresh());
  }

  /** Registers the sequence's blocks that are full and computed, so later requests can reuse them.
   *  `numComputed`: tokens whose K/V are really in the cache (a later step may be in flight). */
  cacheComputedBlocks(seq: Sequence, numComputed = seq.numComputed): void {
    if (!this.enablePrefixCaching) return;
    const full = Math.floor(numComputed / this.blockSize);
    // The hashed blocks of a sequence are a prefix of its table (hashed in order here or shared from the
    // cache in order, and never evicted while held): start after the last one — O(1) on a decode step
    // instead of a walk over the whole table.
    let first = full;
    while (first > 0 && !this.blocks[seq.blockTable[first - 1]!]!.hash) first--;
    let prev = first > 0 ? this.blocks[seq.blockTable[first - 1]!]!.hash : '';
    for (let b = first; b < full; b++) {
      const blk = this.blocks[seq.blockTable[b]!]!;
      const chunk = seq.tokens.slice(b * this.blockSize, (b + 1) * this.blockSize);
      prev = chainHash(prev, chunk);
      blk.hash = prev;
      blk.tokens = chunk;
      if (!this.byHash.has(prev)) this.byHash.set(prev, blk.id);
    }
  }

  /** Returns the sequence's blocks (last first, so a prompt's tail is evicted before its head). */
  release(seq: Sequence): void {
    for (let i = seq.blockTable.length - 1; i >= 0; i--) {
      const blk = this.blocks[seq.blockTable[i]!]!;
      if (blk.refCount <= 0) throw new Error(`double free of block ${blk.id}`);
      blk.refCount--;
      if (blk.refCount === 0) {
        if (blk.hash && this.byHash.get(blk.hash) === blk.id) {
          this.cachedFree.set(blk.id, true);
        } else {
          // Never a cache entry, or a duplicate of one another block serves: nothing reusable.
          blk.hash = '';
          blk.tokens = [];
          this.empty.push(blk.id);
        }
      }
    }
    seq.blockTable = [];
    seq.numComputed = 0;
  }

  private takeFresh(): number {
    let id = this.empty.pop();
    if (id === undefined) {
      const lru = this.cachedFree.keys().next();
      if (lru.done) throw new Error('out of KV blocks');
      id = lru.value;
      this.cachedFree.delete(id);
    }
    const blk = this.blocks[id]!;
    if (blk.hash && this.byHash.get(blk.hash) === id) this.byHash.delete(blk.hash);
    blk.hash = '';
    blk.tokens = [];
    blk.refCount = 1;
    return id;
  }
}
