# Multi-stage build: compile in the Rust image, ship the binary on a slim Debian base.
# The binary carries its own TLS roots (webpki-roots) and default prompt; the only shared library
# it needs beyond libc is libopus (Ogg/Opus recordings), installed from Debian in both stages.
FROM rust:1-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin callbridge \
 && cp target/release/callbridge /callbridge

# Everything the server writes (the SQLite store, call recordings) lives under /data, a volume
# owned by the unprivileged user: mount a named volume or a host directory there to keep it.
# tests/cli.rs (`docker_image_writes_only_under_its_data_volume`) checks these lines.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --no-create-home callbridge \
 && mkdir -p /data/recordings \
 && chown -R 65532:65532 /data
COPY --from=build /callbridge /usr/local/bin/callbridge
COPY prompts /prompts
ENV CALLBRIDGE_LISTEN=0.0.0.0:8080 \
    CALLBRIDGE_LOG_FORMAT=json \
    DATABASE_URL=sqlite:///data/callbridge.db \
    CALLBRIDGE_RECORDINGS_DIR=/data/recordings \
    CALLBRIDGE_PROMPTS_DIR=/prompts
VOLUME ["/data"]
WORKDIR /data
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/callbridge"]
CMD ["serve"]
