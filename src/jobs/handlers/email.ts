// The `email` queue: renders a template and sends it through SMTP_URL. A 5xx answer to the
// recipients or the message (a hard bounce: "550 no such user") dead-letters the job at once;
// anything else (the server is down, 4xx "try later", a timeout, bad credentials the operator can
// fix) is retried with the queue's backoff.
import nodemailer from 'nodemailer';
import { emailTemplatesDir } from '../../config/paths.ts';
import { EMAIL_QUEUE } from '../../config/task-queues.ts';
import { defineHandler, JobError } from '../handler.ts';
import { EmailTemplates } from '../templates.ts';

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
  rejected?: string[];
}

/** Refusals of the envelope (RCPT TO) or the message (DATA) that no retry can change. */
const PERMANENT_CODES = new Set(['EENVELOPE', 'EMESSAGE']);

export function describeSmtpError(err: SmtpError): JobError {
  const detail = { smtpCode: err.code ?? null, responseCode: err.responseCode ?? null, ...(err.rejected ? { rejected: err.rejected } : {}) };
  const reason = err.response ?? err.message;
  if (err.responseCode !== undefined && err.responseCode >= 500 && PERMANENT_CODES.has(err.code ?? '')) {
    return new JobError('smtp_rejected', reason, { retryable: false, detail, cause: err });
  }
  return new JobError('smtp_failed', reason, { retryable: true, detail, cause: err });
}

export default defineHandler(EMAIL_QUEUE, {
  unavailable: (env) => (env.smtpUrl ? null : 'SMTP_URL is not set: email jobs wait until it is'),

  start({ env }) {
    const templates = new EmailTemplates(env.emailTemplatesDir ?? emailTemplatesDir);
    const url = new URL(env.smtpUrl!);
    const transport = nodemailer.createTransport(
      {
        host: url.hostname,
        port: url.port ? Number(url.port) : url.protocol === 'smtps:' ? 465 : 587,
        secure: url.protocol === 'smtps:',
        ...(url.username ? { auth: { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) } } : {}),
        connectionTimeout: 10_000,
        greetingTimeout: 10_000,
        socketTimeout: 30_000,
      },
      { from: env.emailFrom },
    );
    return {
      async run(payload) {
        const message = await templates.render(payload.template, payload.data ?? {});
        try {
          const info = await transport.sendMail({
            to: payload.to,
            ...(payload.cc ? { cc: payload.cc } : {}),
            ...(payload.bcc ? { bcc: payload.bcc } : {}),
            ...(payload.replyTo ? { replyTo: payload.replyTo } : {}),
            ...message,
          });
          return { messageId: info.messageId, accepted: info.accepted.map(String), rejected: info.rejected.map(String), response: info.response };
        } catch (err) {
          throw describeSmtpError(err as SmtpError);
        }
      },
      async close() {
        transport.close();
      },
    };
  },
});
