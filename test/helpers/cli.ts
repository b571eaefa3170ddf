import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../src/config/paths.ts';

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `queue-service <args>` as its own process, as an operator runs it. */
export function runCli(args: string[], env: Record<string, string>, onStdout?: (text: string) => void): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(packageRoot, 'src/cli/main.ts'), ...args], {
      env: { ...process.env, LOG_LEVEL: 'silent', ELASTICSEARCH_URL: '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onStdout?.(stdout);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
