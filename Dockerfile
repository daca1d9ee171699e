# tusgate container image.
#
#   docker build --build-arg VERSION=1.2.3 -t tusgate:1.2.3 .
#
# Stages:
#   pages    builds the example front ends (examples/, esbuild) into dist/.
#   build    compiles the static tusgate binary, embedding those pages.
#   runtime  distroless, no shell, runs as nonroot (65532:65532).
#
# Works with BuildKit and the legacy builder (no RUN --mount).

ARG GO_VERSION=1.26
ARG NODE_VERSION=20

FROM node:${NODE_VERSION}-bookworm-slim AS pages
WORKDIR /src/examples
COPY examples/package.json examples/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY examples/src/uppy-s3/package.json examples/src/uppy-s3/package-lock.json ./src/uppy-s3/
RUN cd src/uppy-s3 && npm ci --no-audit --no-fund
COPY examples/ ./
RUN npm run build

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: it is reused until go.mod or
# go.sum change. go.mod asks for Go 1.26.8 and the golang image sets
# GOTOOLCHAIN=local, so the image must ship Go 1.26.8 or newer.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
# The pages built above replace the placeholder; go:embed takes them in.
COPY --from=pages /src/examples/dist/ ./examples/dist/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/tusgate ./cmd/tusgate \
    && /out/tusgate version \
    && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot AS runtime

COPY --from=build /out/tusgate /usr/local/bin/tusgate
# The runtime image has no shell, so /data is made in the build stage and
# copied with its owner set to nonroot.
COPY --from=build --chown=65532:65532 /out/data /data

# Listen on all interfaces inside the container (the binary's default is
# 127.0.0.1:8080); keep uploads, or S3's temp parts (/data/s3-tmp), in /data.
ENV TUSGATE_LISTEN=:8080 \
    TUSGATE_DATA_DIR=/data

VOLUME /data
EXPOSE 8080
USER nonroot:nonroot

# "tusgate healthcheck" asks GET /healthz on the server's --listen (loopback
# for :8080), over HTTPS with --tls-cert, read from TUSGATE_* and the file of
# TUSGATE_CONFIG (it does not see the server's arguments: use the variable).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s \
    CMD ["/usr/local/bin/tusgate", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/tusgate"]
