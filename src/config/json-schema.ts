// The part of JSON Schema a task queue's payload schema may use. The API and the workers check
// payloads with ajv, which knows all of JSON Schema; queue.send (what supabase-js and psql call)
// checks them in SQL with queue.schema_errors() (migrations/007_task_queues.sql), which knows only
// these keywords. A definition that uses anything else is refused when the config is read, so the
// two can never disagree about which keywords count.

/** Keywords that constrain a value, by the JSON type they apply to. */
export const SUPPORTED_KEYWORDS = [
  'type', 'enum', 'const',
  'minLength', 'maxLength', 'pattern', 'format',
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum',
  'items', 'minItems', 'maxItems', 'uniqueItems',
  'properties', 'required', 'additionalProperties', 'minProperties', 'maxProperties',
] as const;

/** Keywords that only describe (ignored by both checkers). */
const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$comment', 'readOnly', 'writeOnly', 'deprecated']);

/** `format` values both checkers implement the same way (the SQL ports ajv-formats' full regexes). */
export const SUPPORTED_FORMATS = ['email', 'uuid'] as const;

const SUPPORTED = new Set<string>(SUPPORTED_KEYWORDS);

/** Every use of an unsupported keyword or format in `schema`, as "keyword at path". */
export function unsupportedSchemaKeywords(schema: unknown, path = '#'): string[] {
  if (typeof schema === 'boolean') return [];
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return [`a non-schema value at ${path}`];
  const found: string[] = [];
  for (const [keyword, value] of Object.entries(schema)) {
    if (ANNOTATIONS.has(keyword)) continue;
    if (!SUPPORTED.has(keyword)) {
      found.push(`"${keyword}" at ${path}`);
      continue;
    }
    if (keyword === 'format' && !(SUPPORTED_FORMATS as readonly string[]).includes(value as string)) {
      found.push(`format "${String(value)}" at ${path} (supported: ${SUPPORTED_FORMATS.join(', ')})`);
    }
    if (keyword === 'items') {
      if (Array.isArray(value)) found.push(`tuple "items" at ${path}`);
      else found.push(...unsupportedSchemaKeywords(value, `${path}/items`));
    }
    if (keyword === 'additionalProperties') found.push(...unsupportedSchemaKeywords(value, `${path}/additionalProperties`));
    if (keyword === 'properties' && typeof value === 'object' && value !== null) {
      for (const [name, sub] of Object.entries(value)) found.push(...unsupportedSchemaKeywords(sub, `${path}/properties/${name}`));
    }
  }
  return found;
}
