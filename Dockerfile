# The operator image the chart runs (charts/routero-operator, values `image.repository`/`image.tag`).
#   docker build -t <registry>/routero-operator:0.1.0 .
# Build stage: the release binary (rustls, no OpenSSL; it links only glibc, libm and libgcc_s).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin routero-operator

# Run stage: distroless with glibc and libgcc, no shell, numeric non-root user (the chart's runAsUser 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/routero-operator /usr/local/bin/routero-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/routero-operator"]
CMD ["run"]
