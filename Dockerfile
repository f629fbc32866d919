# secret-sidecar as a standalone image: one static binary and a CA bundle, nothing else (no
# shell, no libc, no package manager). Commands need a shell, so the way to run commands is
# to copy the binary into the sandbox image (deploy/sandbox/Dockerfile, or the `install`
# subcommand from an init container, deploy/kubernetes/); this image alone serves secrets,
# lookups and masking, and answers command routes with 503. See deploy/README.md.
#
#   docker build -t secret-sidecar .
#   docker run --read-only -e SESSION_API_KEY=... -p 127.0.0.1:8001:8001 secret-sidecar
#
# CI builds it offline (deploy/build-image): the `build` stage is replaced by a local
# directory holding the binary built by the same script; the runtime stage is used as is.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Static, for the target named explicitly (build scripts and proc macros stay dynamic).
RUN scripts/build-static /out

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/secret-sidecar /usr/local/bin/secret-sidecar
# A container is reached from outside its network namespace, so listen on every address;
# the sidecar then refuses to start without a configured key (SESSION_API_KEY,
# OH_SESSION_API_KEYS_0, or SECRET_SIDECAR_API_KEY_FILE): pass one. The `health`
# subcommand reads the same variable. (DL3064 reacts to "SECRET" in the name: this is an
# address, not a secret.)
# hadolint ignore=DL3064
ENV SECRET_SIDECAR_LISTEN=0.0.0.0:8001
USER 65532:65532
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/secret-sidecar", "health"]
ENTRYPOINT ["/usr/local/bin/secret-sidecar"]
