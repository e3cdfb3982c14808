# The covenant binary on Debian slim. `docker compose up` builds it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p covenant-ops --bin covenant

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/covenant /usr/local/bin/covenant
USER nobody
EXPOSE 4000
ENTRYPOINT ["covenant"]
CMD ["serve"]
