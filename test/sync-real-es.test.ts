// The sync scenarios against a real Elasticsearch. Opt-in: set ELASTICSEARCH_URL (and
// ELASTICSEARCH_API_KEY or ELASTICSEARCH_USERNAME/PASSWORD if it needs them); `docker compose up
// elasticsearch` gives one on localhost:9200. Each test uses its own index prefix and removes it.
import t from 'tap';
import { realSearch } from './helpers/search.ts';
import { scenarios } from './sync-scenarios.ts';

const url = process.env.ELASTICSEARCH_URL;

if (!url) {
  t.comment('ELASTICSEARCH_URL is not set: skipping the real-Elasticsearch run of the sync scenarios');
} else {
  for (const scenario of scenarios) {
    t.test(`${scenario.name} (real Elasticsearch)`, async (t) => {
      await scenario.run(t, await realSearch(t, url));
    });
  }
}
