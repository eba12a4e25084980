# syntax=docker/dockerfile:1.7
# The Pagoda runtime image: `pagoda serve` with the CUDA backend, on the CUDA runtime.
#   docker build -f docker/runtime.Dockerfile -t ghcr.io/pagoda-ai/pagoda-runtime:0.1.0 .
# Build args: CUDA_VERSION (13.0.1, matches driver >= 580), NODE_MAJOR (24), CUDA_ARCHS (CMake's
# CUDAARCHS default, used unless native/ pins its own: 90a for H100/H200, 80 and 89 for A100/L4/L40S).
ARG CUDA_VERSION=13.0.1
ARG UBUNTU_VERSION=24.04
ARG NODE_MAJOR=24

FROM node:${NODE_MAJOR}-bookworm-slim AS node

# ---- build: compile the addon with nvcc, install production dependencies --------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build
ARG CUDA_ARCHS="80;89;90a"
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ make python3 ca-certificates libnccl-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /opt/pagoda
COPY package.json package-lock.json ./
COPY scripts ./scripts
COPY native ./native
COPY kernels ./kernels
COPY runtime ./runtime
# npm ci runs scripts/setup.ts, which builds native/ with the CUDA backend (PAGODA_CUDA=1). The default
# model is not baked in: pods get weights from a volume or the Hugging Face download init container.
ENV PAGODA_CUDA=1 \
    PAGODA_SKIP_MODEL=1 \
    PAGODA_CPU_ARCH=x86-64-v3 \
    CUDAARCHS=${CUDA_ARCHS} \
    CMAKE_BUILD_PARALLEL_LEVEL=8
RUN npm ci \
 && npm prune --omit=dev \
 && rm -rf native/build/Release/obj* native/build/CMakeFiles ~/.npm

# ---- runtime ------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnccl2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=build /opt/pagoda /opt/pagoda
RUN ln -s /opt/pagoda/runtime/bin/pagoda.js /usr/local/bin/pagoda \
 && mkdir -p /models && chown 1000:1000 /models
# The operator runs it as uid 1000 with a read-only root filesystem and /tmp as scratch.
USER 1000:1000
ENV HOME=/tmp \
    NODE_ENV=production
WORKDIR /opt/pagoda
EXPOSE 8000
# The operator passes the full `pagoda serve` command line; this default serves /models on all
# interfaces. SIGTERM drains in-flight requests (--drain-timeout) and exits 0.
CMD ["pagoda", "serve", "--model", "/models", "--host", "0.0.0.0", "--port", "8000", "--device", "cuda"]
