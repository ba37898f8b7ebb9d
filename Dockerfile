# firelake in a distroless image: glibc and one binary, running as a non-root user.
#
# The binary is built on the host first (`cargo build --release`), so the image needs no
# Rust toolchain and builds in seconds:
#     cargo build --release && docker build -t firelake:local .
# BASE is any image with glibc and a non-root user 65532; gcr.io/distroless/cc-debian12
# is that. Where base images cannot be pulled, scripts/docker-check.sh makes a local
# stand-in under the same name (see there).
ARG BASE=gcr.io/distroless/cc-debian12:nonroot
FROM ${BASE}
COPY target/release/firelake /usr/local/bin/firelake
COPY fixtures/workshop.json /etc/firelake/workshop.json
ENV FIRELAKE_HOST=0.0.0.0 \
    FIRELAKE_PORT=4573 \
    FIRELAKE_DATA_DIR=/data \
    FIRELAKE_INIT=/etc/firelake/workshop.json
USER 65532:65532
EXPOSE 4573
VOLUME /data
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD ["/usr/local/bin/firelake", "healthcheck", "--url", "http://127.0.0.1:4573"]
ENTRYPOINT ["/usr/local/bin/firelake"]
