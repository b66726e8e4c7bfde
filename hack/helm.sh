#!/usr/bin/env bash
# Builds helm from its Go module (helm.sh/helm/v3), pinned, into a cache directory outside the
# repository, once; later runs only print the directory. The chart tests (test/chart) run
# `helm lint` and `helm template` with it, and `make manifests` renders deploy/kubernetes with it.
#   hack/helm.sh               build if missing
#   hack/helm.sh --print-dir   print the directory holding the binary (no build)
#   hack/helm.sh --print-bin   print the path of the binary (no build)
set -euo pipefail
HELM_VERSION=v3.22.0
K8S_MAJOR=1
K8S_MINOR=37
CACHE="${RDS_CSI_CACHE:-/var/cache/rds-csi}"
DIR="$CACHE/helm-$HELM_VERSION-k8s$K8S_MAJOR.$K8S_MINOR"

case "${1:-}" in
--print-dir)
	echo "$DIR"
	exit 0
	;;
--print-bin)
	echo "$DIR/helm"
	exit 0
	;;
esac
if [ -x "$DIR/helm" ]; then
	exit 0
fi

export GOTOOLCHAIN=local
mkdir -p "$DIR"
# go install builds in module mode from the proxy, outside this repository's go.mod; a temporary
# GOBIN makes a half-built binary never appear under the final name.
tmp="$(mktemp -d "$DIR/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# The same stamps helm's own Makefile sets: its version, and the Kubernetes version that `helm
# template` and `helm lint` assume (that of its client-go, v0.37: Kubernetes 1.37) instead of the
# built-in fallback 1.20.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
	ldflags="$ldflags -X $pkg.k8sVersionMajor=$K8S_MAJOR -X $pkg.k8sVersionMinor=$K8S_MINOR"
done
echo "helm: building helm $HELM_VERSION from Go modules (first run only)..." >&2
(cd "$tmp" && GOBIN="$tmp" GOFLAGS=-buildvcs=false go install -trimpath -ldflags "$ldflags" helm.sh/helm/v3/cmd/helm@"$HELM_VERSION")
mv "$tmp/helm" "$DIR/helm"
echo "helm: ready in $DIR" >&2
