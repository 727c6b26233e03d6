# klingd in a container: built from source on Debian bookworm, run as a non-root user.
#
#   docker build -t klingd .
#   docker run -d --name klingd \
#     -v klingd-state:/var/lib/klingd \
#     -v /run/klingd-docker:/run/klingd \
#     -v /etc/klingd/aimlapi_key:/run/secrets/aimlapi_key:ro \
#     klingd
#   KLINGD_SOCKET=/run/klingd-docker/klingd.sock klingctl status
#
# See docs/operations.md ("Docker"). No Docker engine runs in our CI: the build stage's
# steps are scripts/docker-build-steps.sh, which CI runs as a plain script
# (tests/integration/test_service_docker_steps.py), and that test also checks this file.

# --- build -------------------------------------------------------------------------------
FROM debian:bookworm-slim AS build
# The same package list as every other build: scripts/install-deps.sh.
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN JOBS="$(nproc)" /src/scripts/docker-build-steps.sh /src /build /staging

# --- runtime -----------------------------------------------------------------------------
FROM debian:bookworm-slim
# The shared libraries klingd and klingctl link (checked against ldd by the CI test),
# CA certificates for HTTPS to the provider, sqlite3 for `.backup`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libboost-json1.81.0 libboost-url1.81.0 libfmt9 libprometheus-cpp-core1.0 \
      libsqlite3-0 libssl3 ca-certificates sqlite3 \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so the host can own the socket directory and grant access to it
# (members of a host group with gid 10001 may use the socket, which is mode 0660).
RUN groupadd --system --gid 10001 klingd \
 && useradd --system --uid 10001 --gid klingd --home-dir /var/lib/klingd --no-create-home \
      --shell /usr/sbin/nologin klingd
COPY --from=build /staging/ /
RUN chown klingd:klingd /var/lib/klingd /run/klingd \
 && chmod 0750 /var/lib/klingd /run/klingd

# What systemd would set: the state directory, the credentials directory (Docker and
# Compose secrets appear as /run/secrets/<name>; without one, AIMLAPI_KEY is used and
# without that the daemon starts paused). KLINGD_SOCKET serves klingd and klingctl alike.
ENV STATE_DIRECTORY=/var/lib/klingd \
    CREDENTIALS_DIRECTORY=/run/secrets \
    KLINGD_SOCKET=/run/klingd/klingd.sock
VOLUME ["/var/lib/klingd", "/run/klingd"]
USER klingd:klingd
WORKDIR /var/lib/klingd

# SIGTERM drains (finish or checkpoint in-flight work within shutdown.grace_s, exit 0);
# give `docker stop` more than that: docker stop --time 30.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["klingctl", "status"]
ENTRYPOINT ["klingd", "--config", "/etc/klingd/klingd.jsonc"]
