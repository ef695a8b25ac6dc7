# syntax=docker/dockerfile:1
# Tally's production image. Two stages: `build` installs every dependency and generates the
# Prisma client; `runtime` installs only the production dependencies and takes the generated
# client and the web console's bundle from `build`. The service runs from its TypeScript sources through tsx (a production
# dependency), so there is no compile step, and it migrates the database itself at start.
# tests/integration/deploy.int.test.ts checks this file against package.json and the repository,
# assembles the runtime stage without a container engine and starts its CMD.

ARG NODE_VERSION=20.20.2

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json prisma.config.ts ./
COPY prisma ./prisma
# Scripts off: the only one the image needs is the client generation, run explicitly below.
RUN npm ci --ignore-scripts --no-audit --no-fund
RUN npm run db:generate
# The web console's bundle (React + Vite, dev dependencies): built here, served by the runtime.
COPY web ./web
RUN npm run build:web

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY package.json package-lock.json ./
# tsx, prisma's wasm schema engine (migrations at start) and the client's adapter are all
# production dependencies; dependencies' install scripts are not needed at run time.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/src/generated ./src/generated
COPY --from=build /app/web/dist ./web/dist
COPY tsconfig.json ./
COPY prisma ./prisma
COPY jobs ./jobs
COPY scripts ./scripts
COPY src ./src
# The files stay root's and read-only to the service: nothing under /app is written at run time
# (tsx caches its transforms under /tmp).
USER node
EXPOSE 3000
# /health is 200 when PostgreSQL and Redis answer, 503 when either does not. Worker and scheduler
# processes serve no HTTP: for them the check passes while the process lives. Slim images have no
# curl, so node asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["node", "-e", "const role = process.env.ROLE || 'all'; if (role === 'worker' || role === 'scheduler') process.exit(0); fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1));"]
# `npm start` without npm in between: node receives SIGTERM itself (and then drains and exits 0).
CMD ["node", "--wasm-tiering-budget=1000000000", "--max-old-space-size=256", "--require", "tsx/cjs", "src/main.ts"]
