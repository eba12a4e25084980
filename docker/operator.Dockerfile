# syntax=docker/dockerfile:1.7
# The Pagoda operator image.
#   docker build -f docker/operator.Dockerfile -t ghcr.io/pagoda-ai/pagoda-operator:0.1.0 .
# It ships the operator as JavaScript stripped from the TypeScript sources at build time
# (operator/tools/build-js.ts): running .ts directly loads Node's type-stripping WebAssembly module,
# ~30 MB of resident memory the operator does not need in production.
ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# Production dependencies only; --ignore-scripts skips the runtime's native build and model download.
RUN npm ci --omit=dev --ignore-scripts && rm -rf ~/.npm
COPY operator ./operator
RUN node --no-warnings operator/tools/build-js.ts /app && cp -r node_modules /app/node_modules

FROM gcr.io/distroless/nodejs${NODE_MAJOR}-debian12:nonroot
WORKDIR /app
COPY --from=build /app /app
# distroless "nonroot" is uid 65532, as the chart's securityContext expects.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/nodejs/bin/node", "/app/operator/src/main.js"]
