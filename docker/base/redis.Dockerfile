# A stand-in for redis:7-bookworm from Debian's redis-server package (bookworm: 7.0), for
# machines that reach Debian's archive but no container registry (deploy/images.py builds it).
# Same interface as the upstream image for what docker-compose.yml uses: `redis-server` as
# the command, data in /data (the working directory), `redis-cli` for the healthcheck.
ARG DEBIAN_IMAGE=localhost/debian-local:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
# The upstream entrypoint adds --protected-mode no when no config file is given: clients in
# other containers are not on loopback.
CMD ["redis-server", "--protected-mode", "no"]
