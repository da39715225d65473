# The chart's TURN server (`turn.enabled`): Debian's coturn as uid 65532, its turnserver given
# the file capability cap_net_bind_service so that a non-root coturn can serve TURN over TLS
# on 443 (the chart's `turn.tls`). images/build.sh builds the same image without Docker, from
# the same Debian release's package.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends coturn libcap2-bin \
 && setcap cap_net_bind_service=+ep /usr/bin/turnserver \
 && apt-get purge -y libcap2-bin \
 && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*
USER 65532:65532
ENTRYPOINT ["/usr/bin/turnserver"]
