// The package's library surface: what application code imports. The service itself runs from
// the `queue-service` bin (src/cli/main.ts).
export { createQueueClient, QueueClientError } from './supabase/client.ts';
export type * from './supabase/client.ts';
