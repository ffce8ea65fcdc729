# The hale binary in a small image: `docker build -t hale .`, then `docker run hale demo`
# (or `proxy …`, `vmcp …`). See docs/operations.md.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The release profile ships the binary stripped (line tables: `--profile profiling`).
RUN cargo build --release --locked -p hale

# glibc and libgcc only (hale needs nothing else: TLS is rustls with its own roots), no
# shell, no package manager; runs as the nonroot user (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/hale /usr/local/bin/hale
EXPOSE 4483
ENTRYPOINT ["/usr/local/bin/hale"]
CMD ["demo", "--listen", "0.0.0.0:4483"]
