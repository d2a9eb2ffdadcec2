# airlock: build with the same command CI compiles with, run as non-root.
#   docker build -t airlock .
#   docker run -p 127.0.0.1:3128:3128 -e AIRLOCK_PROXY_LISTEN=0.0.0.0:3128 airlock

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
RUN cargo build --release --locked --bin airlock

FROM debian:bookworm-slim
# Unpinned on purpose: the image should carry Debian's current root
# certificates and their security updates at every build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin airlock \
 && mkdir -p /data /certs /etc/airlock \
 && chown airlock:airlock /data /certs
COPY --from=build /src/target/release/airlock /usr/local/bin/airlock
COPY rules /etc/airlock/rules
ENV AIRLOCK_STORE_PATH=/data/store \
    AIRLOCK_TLS_CA_DIR=/certs \
    AIRLOCK_RULES_DIR=/etc/airlock/rules
VOLUME ["/data", "/certs"]
EXPOSE 3128 3129
USER 10001:10001
WORKDIR /data
ENTRYPOINT ["airlock"]
CMD ["run"]
