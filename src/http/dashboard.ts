import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import rateLimit from '@fastify/rate-limit';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { dashboardDir } from '../config/paths.ts';
import { NOT_CONFIGURED_MESSAGE, SESSION_COOKIE, type Auth } from './auth.ts';
import { errorResponses } from './errors.ts';

export interface DashboardOptions {
  auth: Auth;
  /** Sign-in attempts allowed per client address per minute. */
  signInAttemptsPerMinute?: number;
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

interface Pages {
  dashboard: string;
  signIn: string;
  script: string;
  style: string;
}

async function loadPages(): Promise<Pages> {
  const read = (name: string) => readFile(join(dashboardDir, name), 'utf8');
  const [dashboard, signIn, script, style] = await Promise.all([read('index.html'), read('sign-in.html'), read('dashboard.js'), read('dashboard.css')]);
  return { dashboard, signIn, script, style };
}

function render(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_, key: string) => values[key] ?? '');
}

/**
 * The operator's page. Script and style are inlined under a per-response CSP nonce, so the page
 * runs nothing it did not ship with; everything it shows and does goes through /api/v1 with the
 * session cookie, so the dashboard can do exactly what the API does and no more.
 */
export const dashboardRoutes: FastifyPluginAsync<DashboardOptions> = async (app, { auth, signInAttemptsPerMinute = 10 }) => {
  const pages = await loadPages();
  await app.register(rateLimit, { global: false });

  // The sign-in form posts as an HTML form does, so it works before any script has run.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  const sendPage = (reply: FastifyReply, status: number, html: (nonce: string) => string) => {
    const nonce = randomBytes(16).toString('base64');
    return reply
      .code(status)
      .header('content-security-policy', `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`)
      .header('x-frame-options', 'DENY')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store')
      .type('text/html; charset=utf-8')
      .send(html(nonce));
  };

  const signInPage = (reply: FastifyReply, status: number, message: string) =>
    sendPage(reply, status, (nonce) => render(pages.signIn, { nonce, style: pages.style, message: escapeHtml(message) }));

  const sessionOf = (request: FastifyRequest) => auth.checkSession(request.cookies[SESSION_COOKIE]);

  const htmlPage = { produces: ['text/html'], response: { 200: { type: 'string' }, 401: { type: 'string' }, 503: { type: 'string' } } };

  app.get('/', {
    schema: { tags: ['dashboard'], summary: 'The dashboard (the sign-in form until signed in)', ...htmlPage },
  }, async (request, reply) => {
    if (!auth.enabled) return signInPage(reply, 503, NOT_CONFIGURED_MESSAGE);
    const session = sessionOf(request);
    if (session.status === 'ok') {
      const csrf = auth.csrfToken(session.value);
      return sendPage(reply, 200, (nonce) => render(pages.dashboard, { nonce, csrf, style: pages.style, script: pages.script }));
    }
    if (auth.checkBearer(request.headers.authorization) === 'ok') {
      return signInPage(reply, 401, 'The dashboard runs in a browser session: sign in with the API token once.');
    }
    return signInPage(reply, 401, session.status === 'expired' ? 'Your session has expired. Sign in again.' : 'Sign in with the API token (API_TOKEN).');
  });

  app.post('/sign-in', {
    config: {
      rateLimit: {
        max: signInAttemptsPerMinute,
        timeWindow: 60_000,
        errorResponseBuilder: (_request, context) => ({
          statusCode: 429,
          error: 'Too Many Requests',
          message: `too many sign-in attempts from this address: ${context.max} a minute are allowed; try again in ${Math.ceil(context.ttl / 1000)} s`,
        }),
      },
    },
    schema: {
      tags: ['dashboard'],
      summary: 'Sign in with the API token; sets an HttpOnly, SameSite=Strict session cookie',
      consumes: ['application/x-www-form-urlencoded', 'application/json'],
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['token'],
        properties: { token: { type: 'string', minLength: 1, maxLength: 4096 } },
      },
      response: { 303: { type: 'null' }, 401: { type: 'string' }, ...errorResponses(400, 429), 503: { type: 'string' } },
    },
  }, async (request, reply) => {
    if (!auth.enabled) return signInPage(reply, 503, NOT_CONFIGURED_MESSAGE);
    const { token } = request.body as { token: string };
    if (!auth.checkToken(token)) {
      request.log.warn({ ip: request.ip }, 'dashboard sign-in refused: wrong token');
      return signInPage(reply, 401, 'That is not the API token. Try again.');
    }
    reply.setCookie(SESSION_COOKIE, auth.createSession(), {
      httpOnly: true,
      sameSite: 'strict',
      secure: request.protocol === 'https',
      path: '/',
      maxAge: auth.sessionSeconds,
    });
    request.log.info({ ip: request.ip }, 'dashboard sign-in');
    return reply.code(303).header('location', '/dashboard').send();
  });

  app.post('/sign-out', {
    schema: { tags: ['dashboard'], summary: 'End the dashboard session', response: { 303: { type: 'null' } } },
  }, async (_request, reply) => {
    reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict' });
    return reply.code(303).header('location', '/dashboard').send();
  });
};
