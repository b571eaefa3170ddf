import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An in-process HTTP server that speaks the part of the Elasticsearch API the service uses, with
 * external versioning as Elasticsearch implements it, and hooks to inject faults. It answers with
 * the `x-elastic-product` header the official client checks before it trusts a server.
 */

export interface StoredDocument {
  version: number;
  source: Record<string, unknown> | null; // null: a delete tombstone
}

export interface BulkItemInput {
  action: 'index' | 'create' | 'delete' | 'update';
  index: string;
  id: string;
  version?: number;
  versionType?: string;
  source?: Record<string, unknown>;
}

export interface ItemFault {
  status: number;
  type: string;
  reason: string;
}

export interface Faults {
  /** Answer the whole request instead of handling it; return undefined to handle it normally. */
  request?: (req: { method: string; path: string; body: string }) => { status: number; body?: unknown; delayMs?: number } | undefined;
  /** Fail one bulk item instead of applying it. */
  item?: (item: BulkItemInput) => ItemFault | undefined;
  /** Delay every response by this much. */
  delayMs?: number;
  /** Delay the response to every bulk request (applied at once, answered late) by this much. */
  bulkDelayMs?: number;
  /** Hold a bulk request before applying it, until the returned promise settles (a request stuck in the network). */
  holdBulk?: (items: BulkItemInput[]) => Promise<void> | undefined;
}

interface Json {
  [key: string]: unknown;
}

/** An index's documents, counting the live ones as they change (benches count millions often). */
export class DocumentStore extends Map<string, StoredDocument> {
  live = 0;

  override set(id: string, doc: StoredDocument): this {
    if (super.get(id)?.source) this.live--;
    if (doc.source) this.live++;
    return super.set(id, doc);
  }

  override delete(id: string): boolean {
    if (super.get(id)?.source) this.live--;
    return super.delete(id);
  }

  override clear(): void {
    this.live = 0;
    super.clear();
  }
}

export class FakeElasticsearch {
  readonly indices = new Map<string, { docs: DocumentStore; mappings: unknown; settings: unknown }>();
  readonly aliases = new Map<string, Set<string>>(); // alias -> indices
  readonly templates = new Map<string, Json>();
  readonly bulkRequests: BulkItemInput[][] = [];
  /** When each bulk request arrived and was answered, and which ids it carried. */
  readonly bulkLog: { start: number; end: number; ids: string[] }[] = [];
  /** Called when a bulk request arrives, before it is applied. */
  onBulk: ((items: number) => void) | null = null;
  faults: Faults = {};
  #server: Server | null = null;
  url = '';
  /** Keep every bulk request in bulkRequests and bulkLog; a bench draining millions turns it off. */
  readonly #record: boolean;

  constructor({ record = true } = {}) {
    this.#record = record;
  }

  async start(): Promise<this> {
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: Error) => this.#send(res, 500, { error: { type: 'fake_failure', reason: err.message } }));
    });
    this.#server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    if (!this.#server) return;
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server!.close(() => resolve()));
    this.#server = null;
  }

  /** The live document of an alias or index, or undefined when it has none. */
  get(name: string, id: string): StoredDocument | undefined {
    for (const index of this.#resolve(name)) {
      const doc = this.indices.get(index)?.docs.get(id);
      if (doc?.source) return doc;
    }
    return undefined;
  }

  /** Live documents of an alias or index. */
  documents(name: string): Map<string, StoredDocument> {
    const result = new Map<string, StoredDocument>();
    for (const index of this.#resolve(name)) {
      for (const [id, doc] of this.indices.get(index)?.docs ?? []) if (doc.source) result.set(id, doc);
    }
    return result;
  }

  count(name: string): number {
    return this.#resolve(name).reduce((n, index) => n + (this.indices.get(index)?.docs.live ?? 0), 0);
  }

  /** Bulk items received for an alias or index, in order. */
  itemsFor(name: string): BulkItemInput[] {
    const indices = new Set(this.#resolve(name));
    return this.bulkRequests.flat().filter((i) => indices.has(i.index) || i.index === name);
  }

  #resolve(name: string): string[] {
    const aliased = this.aliases.get(name);
    if (aliased) return [...aliased];
    return this.indices.has(name) ? [name] : [];
  }

  #send(res: ServerResponse, status: number, body?: unknown, delayMs = 0): void {
    const write = () => {
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'application/json', 'x-elastic-product': 'Elasticsearch' });
      res.end(body === undefined ? undefined : JSON.stringify(body));
    };
    const delay = delayMs + (this.faults.delayMs ?? 0);
    if (delay > 0) setTimeout(write, delay);
    else write();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const path = url.pathname;
    const injected = this.faults.request?.({ method, path, body: raw });
    if (injected) return this.#send(res, injected.status, injected.body ?? { error: { type: 'injected', reason: 'injected fault' }, status: injected.status }, injected.delayMs);
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const body = () => (raw ? (JSON.parse(raw) as Json) : {});

    if (parts.length === 0) {
      if (method === 'HEAD') return this.#send(res, 200);
      return this.#send(res, 200, { name: 'fake', cluster_name: 'fake', version: { number: '9.1.0', build_flavor: 'default' }, tagline: 'You Know, for Search' });
    }
    if (parts[0] === '_bulk' || parts[1] === '_bulk') {
      const start = Date.now();
      this.onBulk?.(raw.split('\n').filter(Boolean).length);
      const held = this.faults.holdBulk?.(this.#parseBulk(raw, parts[1] === '_bulk' ? parts[0] : undefined));
      if (held) await held;
      const { result, received } = this.#bulk(raw, parts[1] === '_bulk' ? parts[0] : undefined);
      if (this.#record) {
        this.bulkRequests.push(received);
        const entry = { start, end: start, ids: received.map((i) => i.id) };
        this.bulkLog.push(entry);
        res.on('finish', () => (entry.end = Date.now()));
      }
      return this.#send(res, 200, result, this.faults.bulkDelayMs ?? 0);
    }
    if (parts[0] === '_cluster' && parts[1] === 'health') return this.#send(res, 200, { status: 'green' });
    if (parts[0] === '_index_template' && parts[1]) {
      if (method === 'PUT') {
        this.templates.set(parts[1], body());
        return this.#send(res, 200, { acknowledged: true });
      }
      if (!this.templates.has(parts[1])) return this.#send(res, 404, method === 'HEAD' ? undefined : { index_templates: [] });
      return this.#send(res, 200, method === 'HEAD' ? undefined : { index_templates: [{ name: parts[1], index_template: this.templates.get(parts[1]) }] });
    }
    if (parts[0] === '_aliases' && method === 'POST') {
      const result = this.#aliasActions(body());
      return this.#send(res, result.status, result.body);
    }
    if (parts[0] === '_alias' && parts[1]) return this.#getAlias(res, method, parts[1]);
    if (parts[1] === '_alias' && parts[2] && method === 'PUT') {
      this.#addAlias(parts[2], parts[0]!);
      return this.#send(res, 200, { acknowledged: true });
    }
    if (parts[1] === '_alias' && !parts[2] && method === 'GET') return this.#indexAliases(res, parts[0]!);
    if (parts[1] === '_refresh') return this.#send(res, 200, { _shards: { total: 1, successful: 1, failed: 0 } });
    if (parts[1] === '_count') return this.#send(res, 200, { count: this.count(parts[0]!) });
    if (parts[1] === '_search') return this.#search(res, parts[0]!, body());
    if (parts[1] === '_doc' && parts[2] && ['PUT', 'POST', 'DELETE'].includes(method)) {
      const item: BulkItemInput = method === 'DELETE' ? { action: 'delete', index: parts[0]!, id: parts[2] } : { action: 'index', index: parts[0]!, id: parts[2], source: body() };
      const version = url.searchParams.get('version');
      if (version !== null) item.version = Number(version);
      const versionType = url.searchParams.get('version_type');
      if (versionType !== null) item.versionType = versionType;
      const result = this.#apply(item);
      return this.#send(res, Number(result.status), result);
    }
    if (parts[1] === '_doc' && parts[2]) return this.#getDoc(res, parts[0]!, parts[2], method);
    if (parts.length === 1) return this.#index(res, method, parts[0]!, body);
    return this.#send(res, 404, { error: { type: 'fake_unsupported', reason: `${method} ${path} is not implemented by the fake` }, status: 404 });
  }

  #index(res: ServerResponse, method: string, name: string, body: () => Json): void {
    const exists = this.indices.has(name) || this.aliases.has(name);
    if (method === 'HEAD') return this.#send(res, exists ? 200 : 404);
    if (method === 'DELETE') {
      this.#deleteIndex(name);
      return this.#send(res, 200, { acknowledged: true });
    }
    if (method === 'PUT') {
      if (exists) return this.#send(res, 400, { error: { type: 'resource_already_exists_exception', reason: `index [${name}] already exists` }, status: 400 });
      const b = body();
      // As Elasticsearch does: the highest-priority template whose pattern matches shapes the
      // index, and what the request itself names wins over it.
      const template = this.#matchingTemplate(name)?.template as Json | undefined;
      this.indices.set(name, {
        docs: new DocumentStore(),
        mappings: b.mappings ?? template?.mappings,
        settings: { ...(template?.settings as Json | undefined), ...(b.settings as Json | undefined) },
      });
      for (const alias of Object.keys((b.aliases as Json | undefined) ?? {})) this.#addAlias(alias, name);
      return this.#send(res, 200, { acknowledged: true, index: name });
    }
    if (!exists) return this.#send(res, 404, { error: { type: 'index_not_found_exception', reason: `no such index [${name}]` }, status: 404 });
    const result: Json = {};
    for (const index of this.#resolve(name)) {
      const i = this.indices.get(index)!;
      result[index] = { mappings: i.mappings, settings: i.settings, aliases: {} };
    }
    return this.#send(res, 200, result);
  }

  #addAlias(alias: string, index: string): void {
    if (!this.aliases.has(alias)) this.aliases.set(alias, new Set());
    this.aliases.get(alias)!.add(index);
  }

  #deleteIndex(name: string): void {
    this.indices.delete(name);
    for (const [alias, set] of this.aliases) {
      set.delete(name);
      if (set.size === 0) this.aliases.delete(alias);
    }
  }

  #matchingTemplate(index: string): Json | undefined {
    const matches = [...this.templates.values()].filter((t) =>
      ((t.index_patterns as string[] | undefined) ?? []).some((p) => new RegExp(`^${p.split('*').map(escapeRegExp).join('.*')}$`).test(index)),
    );
    return matches.sort((a, b) => Number(b.priority ?? 0) - Number(a.priority ?? 0))[0];
  }

  /**
   * One `_aliases` request, atomic as in Elasticsearch: every action is checked first, and one
   * that cannot apply fails the request with nothing changed. `remove_index` deletes an index in
   * the same step, which is how an alias takes over the name of a concrete index.
   */
  #aliasActions(body: Json): { status: number; body: Json } {
    const actions = ((body.actions as Json[]) ?? []).map((action) => {
      const [kind, spec] = Object.entries(action)[0] as [string, { index: string; alias?: string }];
      return { kind, index: spec.index, alias: spec.alias ?? '' };
    });
    const removedIndices = new Set(actions.filter((a) => a.kind === 'remove_index').map((a) => a.index));
    const refuse = (status: number, type: string, reason: string) => ({ status, body: { error: { type, reason }, status } });
    for (const action of actions) {
      if (!this.indices.has(action.index)) return refuse(404, 'index_not_found_exception', `no such index [${action.index}]`);
      if (action.kind === 'add' && this.indices.has(action.alias) && !removedIndices.has(action.alias)) {
        return refuse(400, 'invalid_alias_name_exception', `Invalid alias name [${action.alias}]: an index or data stream exists with the same name as the alias`);
      }
      if (action.kind === 'remove' && !this.aliases.get(action.alias)?.has(action.index)) {
        return refuse(404, 'aliases_not_found_exception', `aliases [${action.alias}] missing`);
      }
      if (!['add', 'remove', 'remove_index'].includes(action.kind)) return refuse(400, 'illegal_argument_exception', `unknown alias action [${action.kind}]`);
    }
    for (const action of actions) {
      if (action.kind === 'remove_index') this.#deleteIndex(action.index);
      if (action.kind === 'remove') {
        const set = this.aliases.get(action.alias)!;
        set.delete(action.index);
        if (set.size === 0) this.aliases.delete(action.alias);
      }
    }
    for (const action of actions) if (action.kind === 'add') this.#addAlias(action.alias, action.index);
    return { status: 200, body: { acknowledged: true } };
  }

  #getAlias(res: ServerResponse, method: string, alias: string): void {
    const indices = this.aliases.get(alias);
    if (!indices || indices.size === 0) return this.#send(res, 404, method === 'HEAD' ? undefined : { error: `alias [${alias}] missing`, status: 404 });
    const result: Json = {};
    for (const index of indices) result[index] = { aliases: { [alias]: {} } };
    return this.#send(res, 200, method === 'HEAD' ? undefined : result);
  }

  #indexAliases(res: ServerResponse, index: string): void {
    const result: Json = {};
    for (const name of this.#resolve(index)) {
      const aliases: Json = {};
      for (const [alias, set] of this.aliases) if (set.has(name)) aliases[alias] = {};
      result[name] = { aliases };
    }
    return this.#send(res, 200, result);
  }

  #getDoc(res: ServerResponse, name: string, id: string, method: string): void {
    const doc = this.get(name, id);
    if (!doc) return this.#send(res, 404, method === 'HEAD' ? undefined : { _index: name, _id: id, found: false });
    return this.#send(res, 200, method === 'HEAD' ? undefined : { _index: name, _id: id, _version: doc.version, found: true, _source: doc.source });
  }

  /** Sorted by the `id` keyword with search_after, as reconcile pages; `ids` queries too. */
  #search(res: ServerResponse, name: string, body: Json): void {
    const size = Number(body.size ?? 10);
    const after = (body.search_after as unknown[] | undefined)?.[0] as string | undefined;
    const idsFilter = ((body.query as Json | undefined)?.ids as { values?: string[] } | undefined)?.values;
    let docs = [...this.documents(name)].filter(([id]) => !idsFilter || idsFilter.includes(id));
    const sort = body.sort as unknown[] | undefined;
    if (sort && JSON.stringify(sort).includes('_id')) {
      return this.#send(res, 400, { error: { type: 'illegal_argument_exception', reason: 'Fielddata access on the _id field is disallowed' }, status: 400 });
    }
    docs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (after !== undefined) docs = docs.filter(([id]) => id > after);
    const page = docs.slice(0, size);
    const wantSource = body._source !== false;
    // Elasticsearch leaves _version out of hits unless the request asks for it.
    const wantVersion = body.version === true;
    return this.#send(res, 200, {
      took: 1,
      timed_out: false,
      hits: {
        total: { value: docs.length, relation: 'eq' },
        hits: page.map(([id, doc]) => ({
          _index: name,
          _id: id,
          ...(wantVersion ? { _version: doc.version } : {}),
          ...(wantSource ? { _source: doc.source } : {}),
          sort: [id],
        })),
      },
    });
  }

  #parseBulk(raw: string, defaultIndex: string | undefined): BulkItemInput[] {
    const lines = raw.split('\n').filter((l) => l.trim() !== '');
    const received: BulkItemInput[] = [];
    for (let i = 0; i < lines.length; i++) {
      const header = JSON.parse(lines[i]!) as Record<string, { _index?: string; _id: string; version?: number; version_type?: string }>;
      const [action, meta] = Object.entries(header)[0] as [BulkItemInput['action'], { _index?: string; _id: string; version?: number; version_type?: string }];
      const item: BulkItemInput = { action, index: meta._index ?? defaultIndex ?? '', id: meta._id };
      if (meta.version !== undefined) item.version = meta.version;
      if (meta.version_type !== undefined) item.versionType = meta.version_type;
      if (action !== 'delete') item.source = JSON.parse(lines[++i]!) as Record<string, unknown>;
      received.push(item);
    }
    return received;
  }

  #bulk(raw: string, defaultIndex: string | undefined): { result: Json; received: BulkItemInput[] } {
    const received = this.#parseBulk(raw, defaultIndex);
    const items = received.map((item) => ({ [item.action]: this.#apply(item) }));
    return { received, result: { took: 1, errors: items.some((it) => Number((Object.values(it)[0] as Json).status) >= 300), items } };
  }

  #apply(item: BulkItemInput): Json {
    const base = { _index: item.index, _id: item.id };
    const fault = this.faults.item?.(item);
    if (fault) return { ...base, status: fault.status, error: { type: fault.type, reason: fault.reason } };
    const targets = this.#resolve(item.index);
    if (targets.length !== 1) {
      return { ...base, status: 404, error: { type: 'index_not_found_exception', reason: `no such index [${item.index}]` } };
    }
    const index = this.indices.get(targets[0]!)!;
    const current = index.docs.get(item.id);
    const external = item.versionType === 'external';
    if (external && current && (item.version ?? 0) <= current.version) {
      return {
        ...base,
        status: 409,
        error: {
          type: 'version_conflict_engine_exception',
          reason: `[${item.id}]: version conflict, current version [${current.version}] is higher or equal to the one provided [${item.version}]`,
        },
      };
    }
    const version = external ? (item.version ?? 0) : (current?.version ?? 0) + 1;
    if (item.action === 'delete') {
      const found = Boolean(current?.source);
      index.docs.set(item.id, { version, source: null });
      return { ...base, _version: version, result: found ? 'deleted' : 'not_found', status: found ? 200 : 404 };
    }
    const created = !current?.source;
    index.docs.set(item.id, { version, source: item.source ?? {} });
    return { ...base, _version: version, result: created ? 'created' : 'updated', status: created ? 201 : 200 };
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
