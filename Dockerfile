# syntax=docker/dockerfile:1
# WasmWiz: a static binary (CGO_ENABLED=0) on distroless/static, as a non-root
# user. Build: make docker (or docker build --build-arg VERSION=… --build-arg COMMIT=… .)

# The toolchain go.mod names (toolchain go1.27.3): its standard library has the
# fixes that govulncheck reports for Go 1.26.8 (see .ci/run).
ARG GO_VERSION=1.27.3

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/wasmwiz ./cmd/wasmwiz \
 && /out/wasmwiz version \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wasmwiz /wasmwiz
COPY --from=build --chown=65532:65532 /out/data /data
# distroless's nonroot user, by number so that runAsNonRoot can verify it.
USER 65532:65532
ENV WASMWIZ_ADDR=0.0.0.0:8080 \
    WASMWIZ_DATA_DIR=/data
EXPOSE 8080
VOLUME ["/data"]
# No shell or curl in this image: the binary asks its own /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["/wasmwiz", "healthcheck"]
ENTRYPOINT ["/wasmwiz"]
CMD ["serve"]
