/**
 * Turns schema validation errors into one message a client can act on. A union (`prompt` may be a
 * string, strings, token ids or arrays of token ids) fails with errors from every branch; the first
 * is usually "must be string", which misleads for `[1, -2]`. So the branch that came closest is found
 * (its shape matched and it broke the fewest rules) and its most specific error is reported; when no
 * branch's shape matched, the message lists the types or values the field accepts.
 */
export interface SchemaError {
  keyword: string;
  instancePath: string;
  schemaPath: string;
  message?: string | undefined;
  params?: Record<string, unknown>;
}

export interface DescribedError {
  message: string;
  param: string | null;
}

const fieldName = (instancePath: string) => instancePath.replace(/^\//, '').replaceAll('/', '.');

function orList(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

export function describeValidationError(errors: readonly SchemaError[]): DescribedError {
  if (errors.length === 0) return { message: 'Invalid request.', param: null };
  // Unions are reported after their branches; the last one is the outermost.
  const union = [...errors].reverse().find((e) => e.keyword === 'anyOf');
  if (!union) return phrase([...errors].sort((a, b) => b.instancePath.length - a.instancePath.length)[0]!);
  return describeUnion(union, errors);
}

function describeUnion(union: SchemaError, all: readonly SchemaError[]): DescribedError {
  const prefix = `${union.schemaPath}/anyOf/`;
  const branches = new Map<string, SchemaError[]>();
  for (const e of all) {
    if (e === union || !e.schemaPath.startsWith(prefix)) continue;
    const branch = e.schemaPath.slice(prefix.length).split('/')[0]!;
    const list = branches.get(branch);
    if (list) list.push(e);
    else branches.set(branch, [e]);
  }
  const at = union.instancePath;
  const isTypeError = (e: SchemaError) => e.keyword === 'type' || e.keyword === 'const';
  // A branch whose own schema (not one nested in it) rejects the value's type has the wrong shape.
  const wrongShape = ([branch, es]: [string, SchemaError[]]) =>
    es.some((e) => isTypeError(e) && e.instancePath === at && e.schemaPath === `${prefix}${branch}`);
  const candidates = [...branches.entries()].filter((b) => !wrongShape(b)).map(([, es]) => es);
  if (candidates.length > 0) {
    // Closest branch: only rule violations (no type mismatch inside) first, then the fewest errors.
    candidates.sort((a, b) => Number(a.some(isTypeError)) - Number(b.some(isTypeError)) || a.length - b.length);
    const best = candidates[0]!;
    const inner = [...best].reverse().find((e) => e.keyword === 'anyOf');
    if (inner) return describeUnion(inner, best);
    return phrase([...best].sort((a, b) => b.instancePath.length - a.instancePath.length)[0]!);
  }
  const scope = [...branches.values()].flat();
  const types = [...new Set(scope.filter((e) => e.keyword === 'type').map((e) => String(e.params?.type)))];
  const values = scope.filter((e) => e.keyword === 'const').map((e) => JSON.stringify(e.params?.allowedValue));
  const name = fieldName(at);
  const expected = values.length > 0 ? `one of ${values.join(', ')}` : `of type ${orList(types)}`;
  if (name === '') return { message: `Invalid request: the body must be ${expected}.`, param: null };
  return { message: `Invalid request: \`${name}\` must be ${expected}.`, param: name };
}

function phrase(e: SchemaError): DescribedError {
  const name = fieldName(e.instancePath);
  if (e.keyword === 'required') {
    const list = (e.params?.requiredProperties ?? []) as string[];
    const fields = list.map((m) => `\`${m}\``).join(', ');
    const plural = list.length > 1 ? 's' : '';
    return name === ''
      ? { message: `Invalid request: missing required field${plural} ${fields}.`, param: list[0] ?? null }
      : { message: `Invalid request: \`${name}\` is missing required field${plural} ${fields}.`, param: name };
  }
  if (name === '' && e.keyword === 'type')
    return { message: 'Invalid request: the body must be a JSON object.', param: null };
  const what =
    e.keyword === 'const' ? `must be ${JSON.stringify(e.params?.allowedValue)}` : (e.message ?? 'is invalid');
  if (name === '') return { message: `Invalid request: ${what}.`, param: null };
  return { message: `Invalid request: \`${name}\` ${what}.`, param: name };
}
