/**
 * The metric over a time window. Each scrape adds one sample: the metric summed over the Ready pods that
 * answered, how many answered and how many did not. The window's load is the mean of the samples taken
 * in the last `windowMs`: averaging the sum (not the per-pod value) keeps it steady while pods come and
 * go, because the same traffic spread over more pods sums to the same total.
 */

export interface Sample {
  at: number;
  /** The metric summed over the pods that answered. */
  total: number;
  answered: number;
  /** Ready pods that could not be scraped. */
  missing: number;
}

export interface Load {
  /** Mean over the window of the summed metric. */
  total: number;
  /** Mean over the window of the metric per answering pod (what status shows next to the target). */
  perPod: number;
  /** Mean over the window of the Ready pods that could not be scraped. */
  missing: number;
  /** Pods that answered the latest scrape. */
  answered: number;
  samples: number;
}

export class SampleWindow {
  private samples: Sample[] = [];

  /** Adds a scrape's sample. A scrape where no pod answered carries no measurement and is not kept. */
  add(sample: Sample): void {
    if (sample.answered === 0) return;
    this.samples.push(sample);
  }

  /** The load of the samples within windowMs before now (dropping older ones), or undefined if none. */
  load(now: number, windowMs: number): Load | undefined {
    this.samples = this.samples.filter((s) => s.at > now - windowMs && s.at <= now);
    const n = this.samples.length;
    const last = this.samples[n - 1];
    if (!last) return undefined;
    let total = 0;
    let perPod = 0;
    let missing = 0;
    for (const s of this.samples) {
      total += s.total;
      perPod += s.total / s.answered;
      missing += s.missing;
    }
    return { total: total / n, perPod: perPod / n, missing: missing / n, answered: last.answered, samples: n };
  }
}
