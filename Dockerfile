# syntax=docker/dockerfile:1
# One image with every Kappa Exchange binary (kappa, order-generator, match-maker, sma-calculator,
# profit-calculator, market-view). Build: docker build -t kappa-exchange:0.1.0 .
# librdkafka is compiled and linked statically by rdkafka's build (gcc, make, zlib), with OpenSSL
# (dynamically: libssl3 at run time) for the cluster's SASL_SSL/SCRAM-SHA-512.

FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY jobs ./jobs
COPY data ./data
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && mkdir -p /out \
    && cp target/release/kappa target/release/order-generator target/release/match-maker \
          target/release/sma-calculator target/release/profit-calculator target/release/market-view \
          target/release/fix-gateway /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 kappa \
    && useradd --system --uid 10001 --gid kappa --home-dir /var/lib/kappa --create-home kappa
COPY --from=build /out/ /usr/local/bin/
COPY data/instruments.toml /etc/kappa/instruments.toml
USER 10001:10001
WORKDIR /var/lib/kappa
ENV LOG_JSON=true \
    KAPPA_OPS_BIND=0.0.0.0:9464
# 8080: market-view HTTP API and dashboard; 9464: /metrics, /healthz, /readyz of the other jobs.
EXPOSE 8080 9464
CMD ["kappa", "--help"]
