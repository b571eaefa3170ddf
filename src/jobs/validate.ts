// Payload validation in the worker: a job can reach a queue from the API, queue.send, a trigger,
// psql or a replay, so the worker checks it again and dead-letters what does not fit, with the
// reason, instead of handing the handler something its type does not describe.
import { Ajv, type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';
import type { DataSchema } from '../config/queues.ts';

export type PayloadCheck = (data: unknown) => string | null;

const ajv = new Ajv({ allErrors: true, strict: false, coerceTypes: false, useDefaults: false, removeAdditional: false });
addFormats.default(ajv);

/** A check for payloads of this schema: null when valid, else every problem in one sentence. */
export function payloadCheck(schema: DataSchema): PayloadCheck {
  const validate = ajv.compile(schema);
  return (data) => (validate(data) ? null : describeSchemaErrors(validate.errors, 'data'));
}

/** Worded like the API's messages and queue.schema_errors(): "data/to/0 must match format "email"". */
export function describeSchemaErrors(errors: ErrorObject[] | null | undefined, root: string): string {
  if (!errors?.length) return `${root} is invalid`;
  const texts = errors.map((e) => {
    const where = `${root}${e.instancePath}`;
    if (e.keyword === 'additionalProperties') return `${where} has unknown property "${String(e.params.additionalProperty)}"`;
    if (e.keyword === 'required') return `${where} must have property "${String(e.params.missingProperty)}"`;
    if (e.keyword === 'enum') return `${where} must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    if (e.keyword === 'const') return `${where} must be ${JSON.stringify(e.params.allowedValue)}`;
    return `${where} ${e.message ?? 'is invalid'}`;
  });
  return [...new Set(texts)].join('; ');
}
