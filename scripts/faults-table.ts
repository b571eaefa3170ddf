// Turns the figures the fault suite records (FAULTS_REPORT=file npm run test:faults) into the
// Markdown table of RELIABILITY.md.
import { readFileSync } from 'node:fs';
import type { FaultResult } from '../test/faults/helpers.ts';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: node scripts/faults-table.ts <FAULTS_REPORT file>\n');
  process.exit(2);
}
const results = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as FaultResult);
const lines = [
  '| scenario | injected | fault lasted | rows written | rows lost | stale documents | converged after the fault |',
  '| --- | --- | --- | --- | --- | --- | --- |',
  ...results.map((r) => `| ${r.scenario} | ${r.injected} | ${r.faultSeconds} s | ${r.rowsWritten} | ${r.lost} | ${r.stale} | ${Number.isNaN(r.convergeSeconds) ? 'did not converge' : `${r.convergeSeconds.toFixed(1)} s`} |`),
];
process.stdout.write(lines.join('\n') + '\n');
