# CI stand-in for the lb profile's nginx image (no Docker Hub here): Debian's nginx on the
# same local base image. Used by .ci/docker-stage.sh for `nginx -t` and the scale-out run.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/*
USER 101:101
CMD ["nginx", "-e", "stderr", "-g", "daemon off;"]
