# The apprunner-build worker image. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t apprunner-build .
# (Not built on the development machine: no base image can be pulled there.)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY src src
COPY runtimes runtimes
RUN cargo build --release --locked --bin apprunner-build

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates git openssh-client \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/apprunner-build /usr/local/bin/apprunner-build
USER 65534:65534
ENV APPRUNNER_METRICS_ADDR=0.0.0.0:9464
EXPOSE 9464
ENTRYPOINT ["apprunner-build"]
CMD ["worker"]
