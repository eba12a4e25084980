/**
 * A reader of the Prometheus text exposition format (0.0.4), as much of it as the autoscaler needs:
 * sample lines `name{label="value",…} value [timestamp]`; `#` comments and blank lines are skipped.
 * Label values may contain escaped quotes, backslashes and newlines; values may be NaN, +Inf or -Inf.
 * Only the samples whose name `keep` accepts are parsed further, so a large exposition costs little.
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export class PromParseError extends Error {
  constructor(line: number, what: string, text: string) {
    super(`metrics line ${line}: ${what}: ${text.length > 120 ? `${text.slice(0, 120)}…` : text}`);
    this.name = 'PromParseError';
  }
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/** A sample value, or undefined when the token is not one. */
function parseValue(token: string): number | undefined {
  if (token === '+Inf' || token === 'Inf') return Number.POSITIVE_INFINITY;
  if (token === '-Inf') return Number.NEGATIVE_INFINITY;
  if (token === 'NaN') return Number.NaN;
  // Number('') and Number('0x10') would pass; the format allows neither.
  return /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(token) ? Number(token) : undefined;
}

/** Parses the labels starting at text[i] === '{'; returns them and the index after '}'. */
function parseLabels(text: string, start: number, fail: (what: string) => never): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  let i = start + 1;
  for (;;) {
    while (text[i] === ' ' || text[i] === ',') i++;
    if (text[i] === '}') return [labels, i + 1];
    if (text[i] === undefined) return fail('unterminated label set');
    const name = LABEL_NAME.exec(text.slice(i))?.[0];
    if (!name) return fail('bad label name');
    i += name.length;
    while (text[i] === ' ') i++;
    if (text[i] !== '=') fail(`"=" expected after label ${name}`);
    i++;
    while (text[i] === ' ') i++;
    if (text[i] !== '"') fail(`quoted value expected for label ${name}`);
    i++;
    let value = '';
    for (;;) {
      const c = text[i];
      if (c === undefined) return fail(`unterminated value of label ${name}`);
      if (c === '"') break;
      if (c === '\\') {
        const n = text[i + 1];
        value += n === 'n' ? '\n' : (n ?? '');
        i += 2;
      } else {
        value += c;
        i++;
      }
    }
    labels[name] = value;
    i++;
  }
}

export function parsePromText(text: string, keep: (name: string) => boolean = () => true): PromSample[] {
  const samples: PromSample[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = (lines[n] as string).trim();
    if (line === '' || line.startsWith('#')) continue;
    const fail: (what: string) => never = (what) => {
      throw new PromParseError(n + 1, what, line);
    };
    const name = NAME.exec(line)?.[0];
    if (!name) return fail('bad metric name');
    if (!keep(name)) continue;
    let i = name.length;
    let labels: Record<string, string> = {};
    if (line[i] === '{') [labels, i] = parseLabels(line, i, fail);
    const rest = line.slice(i).trim().split(/\s+/);
    if (rest.length < 1 || rest.length > 2 || rest[0] === '') fail('value expected');
    const value = parseValue(rest[0] as string);
    if (value === undefined) return fail(`bad value ${rest[0]}`);
    if (rest[1] !== undefined && !/^-?\d+$/.test(rest[1])) fail(`bad timestamp ${rest[1]}`);
    samples.push({ name, labels, value });
  }
  return samples;
}
