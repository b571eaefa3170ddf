import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { createTestDatabase } from './helpers/database.ts';
import { deadLetters, send, waitForJob } from './helpers/jobs.ts';
import { startService } from './helpers/service.ts';

// The email queue against a real SMTP server (smtp-server) on a local port: what it receives is
// what a mail server would.

interface Received {
  from: string;
  to: string[];
  raw: string;
}

async function smtpServer(t: Test, options: Partial<SMTPServerOptions> = {}, port = 0): Promise<{ port: number; received: Received[]; close: () => Promise<void> }> {
  const received: Received[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      let raw = '';
      stream.on('data', (chunk: Buffer) => (raw += chunk.toString()));
      stream.on('end', () => {
        received.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), raw });
        callback();
      });
    },
    ...options,
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  t.teardown(close);
  return { port: (server.server.address() as AddressInfo).port, received, close };
}

/** A port nothing listens on (yet). */
async function freePort(): Promise<number> {
  const probe = createTcpServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const emailEnv = (port: number) => ({
  SMTP_URL: `smtp://127.0.0.1:${port}`,
  EMAIL_FROM: 'Shop <no-reply@shop.example>',
  QUEUE_OVERRIDES: JSON.stringify({ email: { retryDelaySeconds: 1, pollingIntervalSeconds: 1 } }),
});

const welcome = { to: ['ann@example.com'], template: 'welcome', data: { name: 'Ann <3' } };

t.test('an email job renders its template and is delivered by the SMTP server', async (t) => {
  const smtp = await smtpServer(t);
  const db = await createTestDatabase(t);
  await startService(t, db, null, emailEnv(smtp.port));
  const id = await send(db, 'email', welcome);
  const job = await waitForJob(db, id, ['completed']);
  t.equal(smtp.received.length, 1);
  const [mail] = smtp.received;
  t.equal(mail!.from, 'no-reply@shop.example');
  t.same(mail!.to, ['ann@example.com']);
  t.match(mail!.raw, /^Subject: Welcome to the shop, Ann <3\r?$/m);
  t.match(mail!.raw, /Hello Ann <3,/, 'the text part has the value as given');
  t.match(mail!.raw, /Hello Ann &lt;3,/, 'the HTML part has it escaped');
  t.match(job.output, { accepted: ['ann@example.com'], rejected: [], response: /^250/ });
});

t.test('a recipient the server rejects (550) is dead-lettered at once, not retried', async (t) => {
  const smtp = await smtpServer(t, {
    onRcptTo(address, _session, callback) {
      if (address.address === 'gone@example.com') {
        const err = Object.assign(new Error('5.1.1 <gone@example.com>: mailbox unavailable'), { responseCode: 550 });
        return callback(err);
      }
      callback();
    },
  });
  const db = await createTestDatabase(t);
  await startService(t, db, null, emailEnv(smtp.port));
  const id = await send(db, 'email', { ...welcome, to: ['gone@example.com'] });
  const job = await waitForJob(db, id, ['failed']);
  t.equal(job.retry_count, 0, 'one attempt only');
  t.match(job.output, { error: 'smtp_rejected', responseCode: 550, retryable: false, reason: /550 5\.1\.1 <gone@example\.com>: mailbox unavailable/ });
  const [dead] = await deadLetters(db, 'email');
  t.same(dead!.data, { ...welcome, to: ['gone@example.com'] }, 'the job waits in email.dead with its payload');
  t.equal(smtp.received.length, 0);
});

t.test('a server that is down is retried until it answers, then the email is delivered', async (t) => {
  const port = await freePort();
  const db = await createTestDatabase(t);
  await startService(t, db, null, emailEnv(port));
  const id = await send(db, 'email', welcome);
  const retrying = await waitForJob(db, id, ['retry']);
  t.match(retrying.output, { error: 'smtp_failed', retryable: true, reason: /ECONNREFUSED/ });
  const smtp = await smtpServer(t, {}, port);
  const job = await waitForJob(db, id, ['completed'], 30_000);
  t.ok(job.retry_count >= 1, `delivered on a retry (attempt ${job.retry_count + 1})`);
  t.equal(smtp.received.length, 1);
});

t.test('an unknown template or a missing placeholder value is dead-lettered with what is missing', async (t) => {
  const smtp = await smtpServer(t);
  const db = await createTestDatabase(t);
  await startService(t, db, null, emailEnv(smtp.port));
  const unknown = await send(db, 'email', { to: ['ann@example.com'], template: 'no-such-template' });
  t.match((await waitForJob(db, unknown, ['failed'])).output, { error: 'unknown_template', reason: /no template "no-such-template" in .*templates: export-ready, listing-sold, welcome/ });
  const incomplete = await send(db, 'email', { to: ['ann@example.com'], template: 'listing-sold', data: { title: 'Oak table' } });
  t.match((await waitForJob(db, incomplete, ['failed'])).output, { error: 'template_data_missing', reason: 'template "listing-sold" needs data.price' });
  t.equal(smtp.received.length, 0);
});
