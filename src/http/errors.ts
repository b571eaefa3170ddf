import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { OperationError, type OperationFailure } from '../db/jobs.ts';

/** Every error answer has Fastify's shape; the message names what was wrong and what to do. */
export const errorSchema = {
  $id: 'error',
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string' },
    message: { type: 'string' },
  },
  required: ['statusCode', 'error', 'message'],
} as const;

export const errorRef = { $ref: 'error#' } as const;

/** The error answers a route can give, for its response schema (and so for the OpenAPI docs). */
export function errorResponses(...codes: number[]): Record<number, typeof errorRef> {
  return Object.fromEntries(codes.map((code) => [code, errorRef]));
}

const STATUS_OF: Record<OperationFailure, number> = {
  bad_request: 400,
  not_found: 404,
  conflict: 409,
  unavailable: 503,
};

export class HttpError extends Error {
  readonly statusCode: number;

  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

/**
 * Two validators: query strings, params and headers arrive as text, so "limit=10" may become 10;
 * a JSON body means what it says, so "5" stays a string and is refused where a number is wanted.
 * Neither strips unknown properties: a misspelt option is reported, not silently ignored.
 */
export function createValidators(): { text: Ajv; json: Ajv } {
  const make = (coerceTypes: boolean | 'array') => {
    const ajv = new Ajv({ coerceTypes, useDefaults: true, removeAdditional: false, allErrors: true, strict: false });
    addFormats.default(ajv);
    return ajv;
  };
  return { text: make('array'), json: make(false) };
}

type ValidatorCompiler = (route: { schema: unknown; httpPart?: string }) => ValidateFunction;

/**
 * For Fastify's `schemaController.compilersFactory.buildValidator`: Fastify builds a compiler for
 * each context that adds schemas, so a compiler set with setValidatorCompiler on the root would be
 * replaced by the default (which strips unknown properties) in any plugin that calls addSchema.
 */
export function buildValidator(externalSchemas: Record<string, unknown> = {}): ValidatorCompiler {
  const { text, json } = createValidators();
  for (const schema of Object.values(externalSchemas)) {
    text.addSchema(schema as object);
    json.addSchema(schema as object);
  }
  return ({ schema, httpPart }) => (httpPart === 'body' ? json : text).compile(schema as object);
}

/** ajv's errors as one sentence, each naming where in the input it is: "data/id must be string". */
export function describeErrors(errors: ErrorObject[] | null | undefined, root: string): string {
  if (!errors?.length) return `${root} is invalid`;
  const seen = new Set<string>();
  for (const e of errors) {
    const where = `${root}${e.instancePath}`;
    let text: string;
    if (e.keyword === 'additionalProperties') text = `${where} has unknown property "${String(e.params.additionalProperty)}"`;
    else if (e.keyword === 'required') text = `${where} must have property "${String(e.params.missingProperty)}"`;
    else if (e.keyword === 'enum') text = `${where} must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    else if (e.keyword === 'const') text = `${where} must be ${JSON.stringify(e.params.allowedValue)}`;
    else text = `${where} ${e.message ?? 'is invalid'}`;
    seen.add(text);
  }
  return [...seen].join('; ');
}

export function validateOrThrow(validate: ValidateFunction, value: unknown, root: string): void {
  if (!validate(value)) throw new HttpError(400, describeErrors(validate.errors, root));
}

function reasonPhrase(statusCode: number): string {
  const phrases: Record<number, string> = {
    400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
    406: 'Not Acceptable', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
    429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable',
  };
  return phrases[statusCode] ?? (statusCode < 500 ? 'Bad Request' : 'Internal Server Error');
}

export function sendError(reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  return reply.code(statusCode).type('application/json; charset=utf-8').send({ statusCode, error: reasonPhrase(statusCode), message });
}

/**
 * The one place errors become answers. Bad input (validation, unparseable bodies, operation
 * errors) answers 4xx with its message; anything else is a fault of ours: logged with its stack,
 * answered 500 without internals.
 */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | OperationError | HttpError, request: FastifyRequest, reply: FastifyReply) => {
    if (err instanceof OperationError) return sendError(reply, STATUS_OF[err.failure], err.message);
    if (err instanceof HttpError) return sendError(reply, err.statusCode, err.message);
    const fastifyError = err as FastifyError;
    if (fastifyError.validation) {
      const root = fastifyError.validationContext ?? 'request';
      return sendError(reply, 400, describeErrors(fastifyError.validation as ErrorObject[], root));
    }
    const status = fastifyError.statusCode ?? 500;
    if (status >= 400 && status < 500) return sendError(reply, status, err.message || reasonPhrase(status));
    request.log.error({ err, url: request.url, method: request.method }, 'request failed');
    return sendError(reply, status >= 500 ? status : 500, 'internal error; the server log has the details');
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 404, `no route ${request.method} ${request.url.split('?')[0]}; the API is described at /docs`),
  );
}
