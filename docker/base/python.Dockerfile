# A stand-in for python:3.11-slim built from Debian's own packages, for machines that reach
# Debian's archive but no container registry (deploy/images.py builds it; see the README's
# Containers section). Bookworm's Python is 3.11, like the upstream image's.
#
# The Godo Dockerfile relies on the upstream image's layout, so this one provides it:
# `python`, `python3`, `python3.11` and `pip` in /usr/local/bin, pip allowed to install
# into the system interpreter (no PEP 668 marker), apt-get and useradd for the runtime stage.
ARG DEBIAN_IMAGE=localhost/debian-local:bookworm
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends \
        python3 python3-pip python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
    && ln -s /usr/bin/python3.11 /usr/local/bin/python3.11 \
    && ln -s python3.11 /usr/local/bin/python3 \
    && ln -s python3 /usr/local/bin/python \
    && ln -s /usr/bin/pip3 /usr/local/bin/pip
CMD ["python3"]
