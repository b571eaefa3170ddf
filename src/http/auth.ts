import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { sendError } from './errors.ts';

export const SESSION_COOKIE = 'qs_session';
export const CSRF_HEADER = 'x-csrf-token';

export const NOT_CONFIGURED_MESSAGE =
  'API_TOKEN is not set, so /api/v1 and /dashboard are off: set API_TOKEN (at least 16 characters, e.g. `openssl rand -hex 32`) in the environment and restart the service';

export type BearerCheck = 'ok' | 'missing' | 'malformed' | 'wrong';
export type SessionCheck = { status: 'ok'; value: string } | { status: 'missing' | 'expired' | 'invalid' };

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Equal-length digests, so the comparison takes the same time whatever the input. */
function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

const BEARER = /^Bearer +([\x21-\x7e]+)$/i;

/**
 * The API token and the dashboard sessions it grants. A session is a signed expiry and nonce:
 * the signing key is derived from the token and a secret drawn when the process starts, so a
 * restart or a new API_TOKEN ends every session, and nothing is stored server-side.
 */
export class Auth {
  readonly enabled: boolean;
  readonly sessionSeconds: number;
  readonly #token: string;
  readonly #key: Buffer;

  constructor(token: string | undefined, sessionSeconds: number) {
    this.enabled = token !== undefined;
    this.#token = token ?? '';
    this.sessionSeconds = sessionSeconds;
    this.#key = createHmac('sha256', randomBytes(32)).update(this.#token).digest();
  }

  checkToken(given: string): boolean {
    return this.enabled && sameSecret(given, this.#token);
  }

  checkBearer(header: string | undefined): BearerCheck {
    if (header === undefined || header === '') return 'missing';
    const match = BEARER.exec(header);
    if (!match) return 'malformed';
    return this.checkToken(match[1]!) ? 'ok' : 'wrong';
  }

  #sign(payload: string): string {
    return createHmac('sha256', this.#key).update(payload).digest('base64url');
  }

  createSession(now = Date.now()): string {
    const payload = `v1.${Math.floor(now / 1000) + this.sessionSeconds}.${randomBytes(16).toString('base64url')}`;
    return `${payload}.${this.#sign(payload)}`;
  }

  checkSession(value: string | undefined, now = Date.now()): SessionCheck {
    if (!value) return { status: 'missing' };
    const parts = value.split('.');
    if (parts.length !== 4 || parts[0] !== 'v1' || !/^\d{1,12}$/.test(parts[1]!)) return { status: 'invalid' };
    const payload = parts.slice(0, 3).join('.');
    if (!sameSecret(parts[3]!, this.#sign(payload))) return { status: 'invalid' };
    if (Number(parts[1]) * 1000 <= now) return { status: 'expired' };
    return { status: 'ok', value };
  }

  /** The token the dashboard page sends back on changes, tying them to the session's page. */
  csrfToken(session: string): string {
    return this.#sign(`csrf.${session}`);
  }

  checkCsrf(session: string, given: string | undefined): boolean {
    return given !== undefined && sameSecret(given, this.csrfToken(session));
  }
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function unauthorized(reply: FastifyReply, message: string): FastifyReply {
  reply.header('www-authenticate', 'Bearer realm="queue-service"');
  return sendError(reply, 401, message);
}

/**
 * The onRequest hook of /api/v1: a bearer token, or the dashboard's session cookie. A cookie is
 * sent by the browser on its own, so a change made with one must also carry the page's CSRF token
 * (SameSite=Strict keeps other sites out, the token keeps out other pages of the same site).
 */
export function requireApiAuth(auth: Auth) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!auth.enabled) {
      await sendError(reply, 503, NOT_CONFIGURED_MESSAGE);
      return;
    }
    const bearer = auth.checkBearer(request.headers.authorization);
    if (bearer === 'ok') return;
    if (bearer === 'malformed') {
      await unauthorized(reply, 'the Authorization header must be "Bearer <API_TOKEN>"');
      return;
    }
    if (bearer === 'wrong') {
      await unauthorized(reply, 'the bearer token is not this service\'s API_TOKEN');
      return;
    }
    const session = auth.checkSession(request.cookies[SESSION_COOKIE]);
    if (session.status === 'ok') {
      if (UNSAFE.has(request.method) && !auth.checkCsrf(session.value, request.headers[CSRF_HEADER] as string | undefined)) {
        await sendError(reply, 403, `a change made with the dashboard session must carry the page's ${CSRF_HEADER} header; reload /dashboard`);
      }
      return;
    }
    if (session.status === 'expired') {
      await unauthorized(reply, 'the dashboard session has expired: sign in again at /dashboard');
      return;
    }
    await unauthorized(reply, 'send Authorization: Bearer <API_TOKEN>, or sign in at /dashboard');
  };
}
