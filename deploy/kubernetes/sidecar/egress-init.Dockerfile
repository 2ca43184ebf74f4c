# The image of the sidecar shape's first init container (deployment.yaml, "egress-rules"): a POSIX
# shell and Debian's iptables (iptables and ip6tables, nft and legacy backends). The rules are not
# in the image: they come from the ConfigMap that kustomize generates from egress-rules.sh.
#
#   docker build -t vpcgate-egress-init -f deploy/kubernetes/sidecar/egress-init.Dockerfile deploy/kubernetes/sidecar
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT []
CMD ["sh"]
