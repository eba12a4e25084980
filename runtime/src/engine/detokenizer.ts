/**
 * Incremental detokenization: text for tokens as they arrive, holding back bytes that do not yet form
 * whole characters (a multi-byte character split across tokens decodes to U+FFFD until complete).
 */
export interface Decoder {
  decode(ids: readonly number[], opts?: { skipSpecial?: boolean }): string;
}

export class IncrementalDetokenizer {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;
  private readonly decoder: Decoder;
  private readonly skipSpecial: boolean;

  constructor(decoder: Decoder, skipSpecial: boolean) {
    this.decoder = decoder;
    this.skipSpecial = skipSpecial;
  }

  /** Appends one token; returns the text it completes (possibly empty). */
  push(token: number): string {
    this.ids.push(token);
    const opts = { skipSpecial: this.skipSpecial };
    const before = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset), opts);
    const after = this.decoder.decode(this.ids.slice(this.prefixOffset), opts);
    if (after.length > before.length && !after.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      return after.slice(before.length);
    }
    return '';
  }
}
