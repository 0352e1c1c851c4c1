# The wasinfer server image for those who have Docker, Podman or BuildKit: the equivalent of
#     wasinfer package --server --image REGISTRY/wasinfer-server:VERSION
# which builds the same image without any daemon, reproducibly, from pinned Debian .debs and wheels
# (docs/deploy.md, "The server image"). Both give Debian bookworm's Python 3.11, the wasinfer[serve]
# wheels in /usr/local/lib/python3.11/dist-packages, /usr/local/bin/wasinfer, user 65532, the same
# Entrypoint, Env and ports, so the Helm chart runs either. This file is not built by the test suite
# (no daemon there); the daemonless build is, and is what CI checks.
#
#     docker build -t REGISTRY/wasinfer-server:0.1.0 --build-arg VERSION=0.1.0 \
#         --build-arg REVISION=$(git rev-parse HEAD) --build-arg SOURCE_URL=$(git remote get-url origin) .

# Build stage: the wheels for bookworm's Python 3.11, installed into a staging root.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY js ./js
RUN python3.11 -m pip wheel --no-deps -w /wheels . \
 && python3.11 -m pip install --break-system-packages --no-compile --only-binary=:all: \
        --target /stage/usr/local/lib/python3.11/dist-packages "$(ls /wheels/wasinfer-*.whl)[serve]" \
 && rm -rf /stage/usr/local/lib/python3.11/dist-packages/bin \
 && mkdir -p /stage/usr/local/bin /stage/var/lib/wasinfer /stage/models \
 && printf '#!/usr/bin/python3.11\nimport sys\n\nfrom wasinfer.cli.main import main\n\nsys.exit(main())\n' \
        > /stage/usr/local/bin/wasinfer \
 && chmod 755 /stage/usr/local/bin/wasinfer

# Runtime stage: distroless' Debian 12 Python (the same /usr/bin/python3.11), user nonroot = 65532, no shell.
FROM gcr.io/distroless/python3-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=
ARG SOURCE_URL=
COPY --from=build /stage/usr/local /usr/local
COPY --from=build /stage/models /models
COPY --from=build --chown=65532:65532 /stage/var/lib/wasinfer /var/lib/wasinfer
ENV PATH=/usr/local/bin:/usr/bin:/bin \
    HOME=/var/lib/wasinfer \
    WASINFER_HOME=/var/lib/wasinfer \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title=wasinfer-server \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.source=$SOURCE_URL
USER 65532:65532
WORKDIR /var/lib/wasinfer
EXPOSE 8000 8001
ENTRYPOINT ["wasinfer", "serve"]
CMD ["--host", "0.0.0.0", "--model-repository", "/models"]
