# Kommo Bridge: ONE image for every service. The container's arguments name the module it runs:
#   services.gateway | services.auth | services.router | services.kommo_sender | services.messenger_sender
#   libs.db.migrate (the migrations Job) | libs.devstack.emulators (sandbox) | libs.devstack.smoke (helm test)
# Build with `make images`. Why one image, why distroless: docs/operations.md, "The image".

# --- build: dependencies from the test lock, protobuf stubs, bytecode --------------------------------
FROM python:3.11-slim-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy
WORKDIR /src
# The same uv `make install` uses.
RUN pip install --no-cache-dir uv==0.13.9

# Runtime dependencies only: the "# Runtime" section of requirements.in, held to the exact versions of
# requirements.lock (the lock the tests run on) by installing with it as constraints; the test and
# dev tools of the lock stay out of the image. grpcio-tools (same lock) only generates the stubs.
COPY requirements.in requirements.lock ./
RUN awk '/^#/ { runtime = ($0 == "# Runtime"); next } runtime && NF' requirements.in > runtime.in \
 && uv pip install --python /usr/local/bin/python3.11 --target /opt/bridge/deps -r runtime.in -c requirements.lock \
 && uv pip install --python /usr/local/bin/python3.11 --target /opt/protoc -c requirements.lock grpcio-tools

COPY protos ./protos
COPY libs ./libs
COPY services ./services
# Protobuf stubs as `make protos` makes them (without the .pyi typing stubs, unused at run time); then
# bytecode that never needs rewriting (the root filesystem is read-only); then every entry point is
# imported once, so a missing run-time dependency fails the build instead of a pod.
RUN rm -rf libs/contracts/kommo_bridge \
 && find protos -name '*.proto' -print0 \
    | PYTHONPATH=/opt/protoc xargs -0 python3.11 -m grpc_tools.protoc -I protos \
        --python_out=libs/contracts --grpc_python_out=libs/contracts \
 && find libs/contracts/kommo_bridge -type d -exec touch {}/__init__.py \; \
 && mkdir -p /opt/bridge/app \
 && cp -r libs services /opt/bridge/app/ \
 && rm -rf /opt/bridge/deps/bin /opt/bridge/deps/include \
 && python3.11 -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/bridge \
 && PYTHONPATH=/opt/bridge/app:/opt/bridge/app/libs/contracts:/opt/bridge/deps python3.11 -S -c \
    'import importlib; [importlib.import_module(m) for m in ("services.gateway.app", "services.auth.app", "services.router.app", "services.kommo_sender.app", "services.messenger_sender.app", "libs.db.migrate", "libs.devstack.emulators", "libs.devstack.smoke", "libs.cli.main")]'

# --- runtime: Debian 12's Python 3.11 without a shell or package manager, as a numeric non-root user --
FROM gcr.io/distroless/python3-debian12:nonroot
LABEL org.opencontainers.image.title="kommo-bridge" \
      org.opencontainers.image.description="Kommo Bridge: every service in one image; the arguments pick the module." \
      org.opencontainers.image.licenses="Proprietary"
COPY --from=build /opt/bridge /opt/bridge
ENV PYTHONPATH=/opt/bridge/app:/opt/bridge/app/libs/contracts:/opt/bridge/deps \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/bridge/app
# 65532 is distroless's "nonroot"; the code stays owned by root, so the process cannot change it.
USER 65532:65532
# gateway HTTP, auth gRPC, router gRPC, /metrics /livez /readyz (every process).
EXPOSE 8080 50051 50052 9464
ENTRYPOINT ["/usr/bin/python3.11", "-m"]
CMD ["services.gateway"]
