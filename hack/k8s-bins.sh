#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules (they are not in apt) into a cache directory
# outside the repository, once; later runs only print the directory. The integration tests of the
# attachment manager start them on loopback.
#   hack/k8s-bins.sh               build if missing
#   hack/k8s-bins.sh --print-dir   print the directory holding the binaries (no build)
set -euo pipefail
K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.7.0
CACHE="${RDS_CSI_CACHE:-/var/cache/rds-csi}"
DIR="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"

if [ "${1:-}" = "--print-dir" ]; then
	echo "$DIR"
	exit 0
fi
if [ -x "$DIR/kube-apiserver" ] && [ -x "$DIR/etcd" ]; then
	exit 0
fi

export GOTOOLCHAIN=local
mkdir -p "$DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
	cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
	cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice
	externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl
	kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin
	sample-controller streaming)
{
	echo "module rdscsi.local/k8sbins"
	echo
	echo "go 1.26"
	echo
	echo "require ("
	echo "	k8s.io/kubernetes $K8S_VERSION"
	echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
	echo ")"
	echo
	echo "replace ("
	for m in "${staging[@]}"; do
		echo "	k8s.io/$m => k8s.io/$m $STAGING_VERSION"
	done
	echo ")"
} >"$work/go.mod"
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
GO
cd "$work"
echo "k8s-bins: resolving modules (first run only)..." >&2
go mod tidy -e >/dev/null 2>&1 || true
go get k8s.io/kubernetes@"$K8S_VERSION" go.etcd.io/etcd/server/v3@"$ETCD_VERSION" >/dev/null
echo "k8s-bins: building etcd $ETCD_VERSION..." >&2
go build -o "$DIR/etcd.tmp" go.etcd.io/etcd/server/v3
mv "$DIR/etcd.tmp" "$DIR/etcd"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
echo "k8s-bins: building kube-apiserver $K8S_VERSION (several minutes on a cold cache)..." >&2
go build -ldflags "$ldflags" -o "$DIR/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$DIR/kube-apiserver.tmp" "$DIR/kube-apiserver"
echo "k8s-bins: ready in $DIR" >&2
