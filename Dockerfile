# pikube's image: `pikube lb controller` and `pikube lb speaker` (deploy/ runs it).
# Builds as it is from a checkout, for any platform the base has:
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/pikube/pikube:0.1.0 .
# The lab makes the same layers without a container engine (pikube.lab.kubernetes.appimage).
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
# Where pip finds its CA certificates (a CI behind a TLS-inspecting proxy points it elsewhere).
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy/image/requirements.txt ./
RUN python3 -m pip wheel --no-deps --wheel-dir /wheels . \
 && python3 -m pip install --no-compile --no-deps --only-binary=:all: \
      --target /opt/pikube/site-packages -r requirements.txt /wheels/pikube-*.whl \
 && rm -rf /opt/pikube/site-packages/bin \
 && python3 -m compileall -q --invalidation-mode unchecked-hash /opt/pikube/site-packages

FROM ${BASE}
# nftables: the speaker's optional connection bridge (deploy/components/handover-bridge).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 nftables \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* \
 && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'nonroot:x:65532:' >> /etc/group
COPY --from=build /opt/pikube /opt/pikube
ENV PYTHONPATH=/opt/pikube/site-packages PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The controller runs as this user; the speaker's pod runs as root for its two capabilities.
USER 65532:65532
ENTRYPOINT ["python3", "-m", "pikube"]
CMD ["--help"]
