# syntax=docker/dockerfile:1
# vpcgate container image: build with `docker build -t vpcgate .`, run with docker-compose.yml.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
# The cache mounts keep the registry and the build directory between builds (BuildKit); the binary
# is copied out of the cached target/ in the same step. strip=debuginfo drops the line tables
# (54 MB -> 10 MB) and keeps the symbol names, so a panic's backtrace still names functions.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vpcgate \
 && cp target/release/vpcgate /usr/local/bin/vpcgate

FROM debian:bookworm-slim
# No packages: vpcgate embeds the public roots and needs no TLS library, shell tool or HTTP client.
RUN groupadd --system --gid 10001 vpcgate \
 && useradd --system --uid 10001 --gid vpcgate --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin vpcgate \
 && mkdir -p /ca-public /ca-private /etc/vpcgate \
 && chown vpcgate:vpcgate /ca-public /ca-private \
 && chmod 0755 /ca-public \
 && chmod 0700 /ca-private
COPY --from=build /usr/local/bin/vpcgate /usr/local/bin/vpcgate
COPY config/sidecar.toml /etc/vpcgate/vpcgate.toml
ENV VPCGATE_CONFIG=/etc/vpcgate/vpcgate.toml
# A new named volume mounted on /ca-public or /ca-private starts with these owners and modes: the
# CA certificate is shared read-only with the application containers, the key never leaves /ca-private.
USER vpcgate
EXPOSE 3128 9128
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["vpcgate", "healthcheck"]
# SIGTERM stops accepting and gives open tunnels proxy.shutdown_grace (30s): give the container
# longer than that to stop (docker stop -t 35, stop_grace_period in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["vpcgate"]
CMD ["run"]
