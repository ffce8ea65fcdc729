# The hale binary in a small image: `docker build -t hale .`, then `docker run hale demo`
# (or `proxy …`, `vmcp …`). See docs/operations.md.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p hale

FROM debian:bookworm-slim
COPY --from=build /src/target/release/hale /usr/local/bin/hale
USER 65532:65532
EXPOSE 4483
ENTRYPOINT ["/usr/local/bin/hale"]
CMD ["demo", "--listen", "0.0.0.0:4483"]
