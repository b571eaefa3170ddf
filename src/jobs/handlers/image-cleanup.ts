// The `image-cleanup` queue: a trigger on inventory_items (migrations/007_task_queues.sql)
// enqueues {itemId, sku, imageUrls} for every deleted item with images; this deletes them from
// IMAGE_STORAGE. Deleting is idempotent (an image already gone counts as missing), so a retry
// after a partial run finishes the rest.
import { IMAGE_CLEANUP_QUEUE } from '../../config/task-queues.ts';
import { defineHandler } from '../handler.ts';
import { createImageStorage } from '../storage.ts';

export default defineHandler(IMAGE_CLEANUP_QUEUE, {
  unavailable: (env) => (env.imageStorage ? null : 'IMAGE_STORAGE is not set: image-cleanup jobs wait until it is'),

  start({ env, log }) {
    const storage = createImageStorage(env);
    log.info({ storage: storage.describe }, 'image cleanup deletes from storage');
    return {
      async run(payload) {
        return { itemId: payload.itemId, ...(await storage.remove(payload.imageUrls)) };
      },
    };
  },
});
