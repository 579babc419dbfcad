# imsproxy and the Adobe emulator as small static images.
#
#   docker build -t imsproxy .                          # the proxy (the last stage, the default)
#   docker build --build-arg VERSION=v1.2.3 --build-arg REVISION=$(git rev-parse HEAD) -t imsproxy:v1.2.3 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t registry.example.com/imsproxy:v1.2.3 --push .
#   docker build --target fakeadobe -t fakeadobe .     # the emulator, for docker-compose.yml
#
# The final images are distroless "static" (CA certificates, /etc/passwd, no
# shell) running as the unprivileged user nonroot (65532). The base images
# are pinned by digest, so a rebuild of a commit starts from the same bytes;
# to move to a newer base, replace the digest (crane digest IMAGE:TAG
# prints the current one). The Go compiler always runs on the machine that
# builds (BUILDPLATFORM) and cross-compiles for each target platform
# (TARGETOS/TARGETARCH, set by buildx): no emulation, a few seconds per
# platform.
# Tested by deploy/deploytest (no Docker engine needed).

FROM --platform=$BUILDPLATFORM golang:1.26@sha256:3aff6657219a4d9c14e27fb1d8976c49c29fddb70ba835014f477e1c70636647 AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY . .

# TARGETOS and TARGETARCH are set by buildx for the platform being built (a
# plain docker build sets them to the builder's own); a stage sees them
# only once it declares them.
FROM build AS build-fakeadobe
ARG TARGETOS
ARG TARGETARCH
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/fakeadobe ./cmd/fakeadobe && mkdir /out/creds

# The context has no .git (.dockerignore), so the commit is stamped from
# REVISION: imsproxy version and imsproxy_build_info show it.
FROM build AS build-imsproxy
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w -X github.com/imsproxy/imsproxy/internal/version.release=${VERSION} -X github.com/imsproxy/imsproxy/internal/version.revision=${REVISION}" -o /out/imsproxy ./cmd/imsproxy

# The emulator: hands out tokens to anyone who asks, so it listens on
# loopback only; docker-compose.yml puts imsproxy in its network namespace.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS fakeadobe
COPY --from=build-fakeadobe /out/fakeadobe /usr/local/bin/fakeadobe
# An empty directory owned by nonroot: a named volume mounted here starts
# with this owner, so the emulator can write the generated credentials.
COPY --from=build-fakeadobe --chown=65532:65532 /out/creds /creds
USER nonroot:nonroot
EXPOSE 8900
ENTRYPOINT ["/usr/local/bin/fakeadobe"]

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab AS imsproxy
ARG VERSION=dev
# The commit and the build time (RFC 3339), for the image's labels.
ARG REVISION=
ARG CREATED=
LABEL org.opencontainers.image.title="imsproxy" \
      org.opencontainers.image.description="Calls Adobe Stock, AEM and Brand Portal for applications that hold no Adobe credentials: gets and renews Adobe IMS tokens, adds them to every request, caches Stock searches, guards licensing." \
      org.opencontainers.image.source="https://github.com/imsproxy/imsproxy" \
      org.opencontainers.image.url="https://github.com/imsproxy/imsproxy" \
      org.opencontainers.image.documentation="https://github.com/imsproxy/imsproxy/tree/main/docs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build-imsproxy /out/imsproxy /usr/local/bin/imsproxy
USER nonroot:nonroot
# stock, aem, admin (the default listeners; they bind to loopback unless
# IMSPROXY_*_LISTEN say otherwise)
EXPOSE 8080 8081 9090
# Asks the admin listener (IMSPROXY_ADMIN_LISTEN) for /readyz: healthy once
# every route holds a valid token. Exec form: the image has no shell.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/imsproxy", "health"]
ENTRYPOINT ["/usr/local/bin/imsproxy"]
CMD ["serve"]
