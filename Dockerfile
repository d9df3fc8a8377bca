# Multi-stage build: compile in the Rust image, ship only the binary on a distroless base.
# The binary carries its own TLS roots (webpki-roots) and default prompt, so the runtime image
# needs nothing else.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin callbridge \
 && cp target/release/callbridge /callbridge

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /callbridge /usr/local/bin/callbridge
COPY prompts /prompts
ENV CALLBRIDGE_LISTEN=0.0.0.0:8080 \
    CALLBRIDGE_LOG_FORMAT=json
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/usr/local/bin/callbridge"]
CMD ["serve"]
