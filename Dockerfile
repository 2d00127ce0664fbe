# syntax=docker/dockerfile:1
# Builds both binaries (gateway, worker) in one image; docker-compose.yml runs it twice.

FROM rust:1-bookworm AS build
# libjpeg-turbo and rav1e's assembly are built from source: cmake and nasm. HEIC/AVIF are
# read through the system libheif (headers and pkg-config file from libheif-dev).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake nasm pkg-config libheif-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway -p workers \
 && cp target/release/gateway target/release/worker /usr/local/bin/

FROM debian:bookworm-slim
# ffmpeg/ffprobe decode videos in child processes (setpriv and prlimit from util-linux bound them);
# libheif1 (with libde265 and dav1d) decodes HEIC and AVIF.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl ffmpeg util-linux libheif1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/imagepipe --create-home imagepipe
COPY --from=build /usr/local/bin/gateway /usr/local/bin/worker /usr/local/bin/
USER imagepipe
WORKDIR /var/lib/imagepipe
EXPOSE 8080 9100
CMD ["gateway"]
