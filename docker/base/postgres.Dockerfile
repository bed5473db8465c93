# A stand-in for postgres:16-bookworm from Debian's PostgreSQL (bookworm: 15; Godo supports
# 15+), for machines that reach Debian's archive but no container registry
# (deploy/images.py builds it). It keeps the upstream image's interface for what
# docker-compose.yml uses: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, the data directory
# /var/lib/postgresql/data, *.sql in /docker-entrypoint-initdb.d run on the first start,
# `postgres [args]` as the command and pg_isready on PATH. PGPORT moves the port.
ARG DEBIAN_IMAGE=localhost/debian-local:bookworm
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8 \
    PG_MAJOR=15 \
    PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
# postgresql-common first, told not to create a cluster: the entrypoint creates one in PGDATA.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends postgresql-common \
    && sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf \
    && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends "postgresql-${PG_MAJOR}" \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p "$PGDATA" /var/run/postgresql /docker-entrypoint-initdb.d \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 700 "$PGDATA"
COPY --chmod=0755 postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
