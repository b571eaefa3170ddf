import type { Logger } from '../config/logger.ts';

/** Where a long-running tool says how far it got. */
export interface Progress {
  /** A new phase of `total` units (rows, jobs). */
  start(label: string, total: number): void;
  update(done: number): void;
  /** Ends the phase; `summary` is logged with it. */
  finish(summary?: Record<string, unknown>): void;
}

export interface ProgressOptions {
  /** The terminal the bar is drawn on; without a TTY, progress goes to the log instead. */
  stream: NodeJS.WriteStream | { isTTY?: boolean; columns?: number; write(text: string): boolean };
  log: Logger;
  /** Least time between two log lines (a line is also written at every tenth of the way). */
  logIntervalMs?: number;
}

const BAR_WIDTH = 30;

/** A bar redrawn in place on a terminal, periodic log lines anywhere else (a container, CI). */
export function createProgress(options: ProgressOptions): Progress {
  return options.stream.isTTY ? new TerminalProgress(options.stream) : new LoggedProgress(options.log, options.logIntervalMs ?? 5000);
}

/** For callers that want no progress at all (the scheduled reconcile logs its own result). */
export const silentProgress: Progress = { start() {}, update() {}, finish() {} };

class TerminalProgress implements Progress {
  readonly #stream: ProgressOptions['stream'];
  #label = '';
  #total = 0;
  #drawnAt = 0;

  constructor(stream: ProgressOptions['stream']) {
    this.#stream = stream;
  }

  start(label: string, total: number): void {
    this.#label = label;
    this.#total = total;
    this.#draw(0);
  }

  update(done: number): void {
    // Redrawing more than ~10 times a second only costs time.
    if (performance.now() - this.#drawnAt < 100 && done < this.#total) return;
    this.#draw(done);
  }

  finish(): void {
    this.#draw(this.#total);
    this.#stream.write('\n');
  }

  #draw(done: number): void {
    this.#drawnAt = performance.now();
    const fraction = this.#total > 0 ? Math.min(done / this.#total, 1) : 1;
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = '#'.repeat(filled) + '-'.repeat(BAR_WIDTH - filled);
    const line = `${this.#label} [${bar}] ${Math.floor(fraction * 100)}% ${done}/${this.#total}`;
    this.#stream.write(`\r${line.slice(0, (this.#stream.columns ?? 120) - 1)}\x1b[K`);
  }
}

class LoggedProgress implements Progress {
  readonly #log: Logger;
  readonly #intervalMs: number;
  #label = '';
  #total = 0;
  #loggedAt = 0;
  #loggedTenth = 0;
  #done = 0;

  constructor(log: Logger, intervalMs: number) {
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  start(label: string, total: number): void {
    this.#label = label;
    this.#total = total;
    this.#done = 0;
    this.#loggedTenth = 0;
    this.#line('started');
  }

  update(done: number): void {
    this.#done = done;
    const tenth = this.#total > 0 ? Math.floor((done / this.#total) * 10) : 10;
    if (tenth > this.#loggedTenth || performance.now() - this.#loggedAt >= this.#intervalMs) {
      this.#loggedTenth = tenth;
      this.#line('progress');
    }
  }

  finish(summary: Record<string, unknown> = {}): void {
    this.#line('finished', summary);
  }

  #line(event: string, extra: Record<string, unknown> = {}): void {
    this.#loggedAt = performance.now();
    const percent = this.#total > 0 ? Math.floor((Math.min(this.#done, this.#total) / this.#total) * 100) : 100;
    this.#log.info({ phase: this.#label, done: this.#done, total: this.#total, percent, ...extra }, `${this.#label} ${event}`);
  }
}
