# imsproxy and the Adobe emulator as small static images.
#
#   docker build -t imsproxy .                          # the proxy (the last stage, the default)
#   docker build --build-arg VERSION=v1.2.3 -t imsproxy:v1.2.3 .
#   docker build --target fakeadobe -t fakeadobe .     # the emulator, for docker-compose.yml
#
# The final images are distroless "static" (CA certificates, /etc/passwd, no
# shell) running as the unprivileged user nonroot (65532). There is no
# HEALTHCHECK: the image has no curl to probe /readyz, and
# `imsproxy check` (which would run in exec form) makes one real token
# exchange per route, which IMS throttles when repeated every few seconds.
# Let the orchestrator probe GET /readyz on the admin listener (a
# Kubernetes readinessProbe, an ECS target-group health check); run
# `imsproxy check` before deploying.
# Tested by integration/dockerfile_test.go (no Docker engine needed).

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY . .

FROM build AS build-fakeadobe
RUN go build -trimpath -ldflags="-s -w" -o /out/fakeadobe ./cmd/fakeadobe && mkdir /out/creds

FROM build AS build-imsproxy
ARG VERSION=dev
RUN go build -trimpath -ldflags="-s -w -X github.com/imsproxy/imsproxy/internal/version.release=${VERSION}" -o /out/imsproxy ./cmd/imsproxy

# The emulator: hands out tokens to anyone who asks, so it listens on
# loopback only; docker-compose.yml puts imsproxy in its network namespace.
FROM gcr.io/distroless/static-debian12:nonroot AS fakeadobe
COPY --from=build-fakeadobe /out/fakeadobe /usr/local/bin/fakeadobe
# An empty directory owned by nonroot: a named volume mounted here starts
# with this owner, so the emulator can write the generated credentials.
COPY --from=build-fakeadobe --chown=65532:65532 /out/creds /creds
USER nonroot:nonroot
EXPOSE 8900
ENTRYPOINT ["/usr/local/bin/fakeadobe"]

FROM gcr.io/distroless/static-debian12:nonroot AS imsproxy
COPY --from=build-imsproxy /out/imsproxy /usr/local/bin/imsproxy
USER nonroot:nonroot
# stock, aem, admin (the default listeners; they bind to loopback unless
# IMSPROXY_*_LISTEN say otherwise)
EXPOSE 8080 8081 9090
ENTRYPOINT ["/usr/local/bin/imsproxy"]
CMD ["serve"]
