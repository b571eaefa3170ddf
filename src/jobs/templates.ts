// Email templates: `<name>.txt` is a `Subject:` line, a blank line and the text body;
// `<name>.html`, when present, is the HTML body. `{{key}}` is replaced by the job's data[key]
// (HTML-escaped in the HTML body). A template that does not exist, or a placeholder the data does
// not fill, cannot succeed on retry: both are reported as not retryable.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { notRetryable } from './handler.ts';

export interface RenderedEmail {
  subject: string;
  text: string;
  html?: string;
}

type TemplateData = Record<string, string | number | boolean>;

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;
const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;

const escapeHtml = (value: string) =>
  value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export class EmailTemplates {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  async names(): Promise<string[]> {
    const files = await readdir(this.dir).catch(() => [] as string[]);
    return files.filter((f) => f.endsWith('.txt')).map((f) => f.slice(0, -4)).sort();
  }

  async render(name: string, data: TemplateData): Promise<RenderedEmail> {
    if (!NAME.test(name)) throw notRetryable('unknown_template', `"${name}" is not a template name`);
    const source = await readFile(join(this.dir, `${name}.txt`), 'utf8').catch(() => null);
    if (source === null) {
      throw notRetryable('unknown_template', `no template "${name}" in ${this.dir} (templates: ${(await this.names()).join(', ') || 'none'})`);
    }
    const match = /^Subject:[ \t]*(.*)\r?\n\r?\n([\s\S]*)$/.exec(source);
    if (!match) throw notRetryable('bad_template', `${name}.txt must start with a "Subject: ..." line and a blank line`);
    const html = await readFile(join(this.dir, `${name}.html`), 'utf8').catch(() => null);
    const missing = new Set<string>();
    const fill = (template: string, encode: (v: string) => string) =>
      template.replace(PLACEHOLDER, (_, key: string) => {
        if (!(key in data)) {
          missing.add(key);
          return '';
        }
        return encode(String(data[key]));
      });
    // A line break in a subject value would start a new header line.
    const subject = fill(match[1]!, (v) => v.replace(/[\r\n]+/g, ' ')).trim();
    const text = fill(match[2]!, (v) => v);
    const rendered: RenderedEmail = { subject, text, ...(html !== null ? { html: fill(html, escapeHtml) } : {}) };
    if (missing.size > 0) {
      throw notRetryable('template_data_missing', `template "${name}" needs ${[...missing].map((k) => `data.${k}`).join(', ')}`);
    }
    return rendered;
  }
}
