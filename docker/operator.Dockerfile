# syntax=docker/dockerfile:1.7
# The Pagoda operator image: the TypeScript operator run by Node's type stripping, no build step.
#   docker build -f docker/operator.Dockerfile -t ghcr.io/pagoda-ai/pagoda-operator:0.1.0 .
ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; --ignore-scripts skips the runtime's native build and model download.
RUN npm ci --omit=dev --ignore-scripts && rm -rf ~/.npm

FROM gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY operator/src ./operator/src
# distroless "nonroot" is uid 65532, as the chart's securityContext expects.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/nodejs/bin/node", "/app/operator/src/main.ts"]
