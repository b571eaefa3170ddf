// The `export` queue: the rows of a synced table that match a filter, as CSV or NDJSON, into a
// file in EXPORT_DIR. The job's output is {path, format, table, rows, bytes}, which
// GET /api/v1/queue/jobs/:id returns once the job completed.
import { EXPORT_QUEUE } from '../../config/task-queues.ts';
import { exportRows } from '../export-rows.ts';
import { defineHandler } from '../handler.ts';

export default defineHandler(EXPORT_QUEUE, {
  unavailable: (env) => (env.exportDir ? null : 'EXPORT_DIR is not set: export jobs wait until it is'),

  start({ env, pool }) {
    return {
      run: (payload, job) => exportRows(pool, env.exportDir!, job.id, payload, job.signal),
    };
  },
});
