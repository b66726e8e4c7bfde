#!/usr/bin/env bash
# Builds what test/cluster runs beside the API server, from Go modules, into a cache directory
# outside the repository (its own directory, so the API server's cache of hack/k8s-bins.sh stays
# valid), once; later runs only check and print:
#   - kubelet, kube-controller-manager, kube-scheduler (k8s.io/kubernetes, a throwaway module as in
#     hack/k8s-bins.sh: its go.mod needs the staging replaces)
#   - the CSI sidecars csi-provisioner, csi-attacher, csi-resizer, csi-snapshotter and the
#     snapshot-controller, built from writable copies of their module sources (their go.mod files
#     have replace directives, so `go install mod@version` refuses them), plus the snapshot CRDs
#   - each sidecar wrapped as an image (one static binary layer on an empty base, via crane) and
#     pushed to the loopback registry of hack/image.sh, under the names the chart's values use
#   hack/cluster-bins.sh               build what is missing, push the sidecar images
#   hack/cluster-bins.sh --print-dir   print the directory (no build)
#   hack/cluster-bins.sh k8s|sidecars|images   one part only
set -euo pipefail
K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
PROVISIONER=v6.4.0
ATTACHER=v4.13.0
RESIZER=v2.3.0
SNAPSHOTTER=v8.7.0
CACHE="${RDS_CSI_CACHE:-/var/cache/rds-csi}"
DIR="$CACHE/cluster-k8s-$K8S_VERSION-p$PROVISIONER-a$ATTACHER-r$RESIZER-s$SNAPSHOTTER"
PORT="${RDS_CSI_REGISTRY_PORT:-5555}"
REGISTRY="127.0.0.1:$PORT"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export GOTOOLCHAIN=local
log() { echo "cluster-bins: $*" >&2; }

part="${1:-all}"
case "$part" in
--print-dir) echo "$DIR"; exit 0 ;;
all | k8s | sidecars | images) ;;
*) echo "usage: $0 [--print-dir|k8s|sidecars|images]" >&2; exit 2 ;;
esac
mkdir -p "$DIR"

build_k8s() {
	local want=(kubelet kube-controller-manager kube-scheduler) missing=() b
	for b in "${want[@]}"; do [ -x "$DIR/$b" ] || missing+=("$b"); done
	[ ${#missing[@]} -gt 0 ] || return 0
	local work start=$SECONDS
	work="$(mktemp -d)"
	# shellcheck disable=SC2064
	trap "rm -rf '$work'" RETURN
	local staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
		cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
		cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice
		externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl
		kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin
		sample-controller streaming)
	{
		printf 'module rdscsi.local/clusterbins\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
		for m in "${staging[@]}"; do printf '\tk8s.io/%s => k8s.io/%s %s\n' "$m" "$m" "$STAGING_VERSION"; done
		printf ')\n'
	} >"$work/go.mod"
	cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
	(
		cd "$work"
		log "resolving k8s.io/kubernetes $K8S_VERSION"
		go mod tidy -e >/dev/null 2>&1 || true
		go get k8s.io/kubernetes@"$K8S_VERSION" >/dev/null
		local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
		for b in "${missing[@]}"; do
			log "building $b $K8S_VERSION"
			go build -ldflags "$ldflags" -o "$DIR/$b.tmp" "k8s.io/kubernetes/cmd/$b"
			mv "$DIR/$b.tmp" "$DIR/$b"
		done
	)
	log "k8s binaries built in $((SECONDS - start)) s"
}

# build_sidecar MODULE VERSION CMD... : go build ./cmd/CMD in a writable copy of the module source.
build_sidecar() {
	local mod="$1" ver="$2"
	shift 2
	local missing=() c
	for c in "$@"; do [ -x "$DIR/$c" ] || missing+=("$c"); done
	[ ${#missing[@]} -gt 0 ] || return 0
	local start=$SECONDS src work
	src="$(cd / && GOFLAGS=-mod=mod go mod download -json "$mod@$ver" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
	[ -d "$src" ] || { log "no source directory for $mod@$ver"; return 1; }
	work="$(mktemp -d)"
	cp -r "$src/." "$work/"
	chmod -R u+w "$work"
	# A nested module the go.mod replaces with its directory (external-snapshotter's client) is
	# not in the module's zip: fetch that module at the same version into the directory.
	local sub
	for sub in $(sed -n 's|^replace \([^ ]*\) => \./\([^ ]*\)$|\1=\2|p' "$work/go.mod"); do
		local smod="${sub%%=*}" sdir="${sub#*=}" ssrc
		[ -d "$work/$sdir" ] && continue
		ssrc="$(cd / && GOFLAGS=-mod=mod go mod download -json "$smod@$ver" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
		[ -d "$ssrc" ] || { log "no source directory for $smod@$ver"; return 1; }
		mkdir -p "$work/$sdir"
		cp -r "$ssrc/." "$work/$sdir/"
		chmod -R u+w "$work/$sdir"
	done
	(
		cd "$work"
		for c in "${missing[@]}"; do
			log "building $c from $mod@$ver"
			# Static: the image holds this one file and nothing else.
			CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w -X main.version=$ver" -o "$DIR/$c.tmp" "./cmd/$c"
			mv "$DIR/$c.tmp" "$DIR/$c"
		done
		if [ -d client/config/crd ] && [ ! -d "$DIR/snapshot-crds" ]; then
			mkdir -p "$DIR/snapshot-crds.tmp"
			cp client/config/crd/snapshot.storage.k8s.io_*.yaml "$DIR/snapshot-crds.tmp/"
			mv "$DIR/snapshot-crds.tmp" "$DIR/snapshot-crds"
		fi
	)
	rm -rf "$work"
	log "${missing[*]} built in $((SECONDS - start)) s"
}

# parallel runs its commands (one a line, each a function call) at once and fails if any failed:
# the builds are mostly single-threaded between compile bursts (module downloads, links), so
# running them together shortens a cold build even on two cores.
parallel() {
	local pids=() line failed=0 pid
	while IFS= read -r line; do
		[ -n "$line" ] || continue
		eval "$line" &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
	return $failed
}

build_sidecars() {
	parallel <<-EOC
		build_sidecar github.com/kubernetes-csi/external-provisioner/v6 $PROVISIONER csi-provisioner
		build_sidecar github.com/kubernetes-csi/external-attacher/v4 $ATTACHER csi-attacher
		build_sidecar github.com/kubernetes-csi/external-resizer/v2 $RESIZER csi-resizer
		build_sidecar github.com/kubernetes-csi/external-snapshotter/v8 $SNAPSHOTTER csi-snapshotter snapshot-controller
	EOC
}

# The images: the registry and crane of hack/image.sh; names and tags as the chart's values.
push_images() {
	local crane
	crane="$("$ROOT/hack/image.sh" --print-crane)"
	[ -x "$crane" ] || { log "crane missing: run make image first"; return 1; }
	if ! "$crane" catalog --insecure "$REGISTRY" >/dev/null 2>&1; then
		log "no registry on $REGISTRY: run make image first (it starts the registry)"
		return 1
	fi
	local name ver bin
	for spec in csi-provisioner:$PROVISIONER csi-attacher:$ATTACHER csi-resizer:$RESIZER \
		csi-snapshotter:$SNAPSHOTTER snapshot-controller:$SNAPSHOTTER; do
		name="${spec%%:*}" ver="${spec#*:}" bin="$DIR/$name"
		local ref="$REGISTRY/sig-storage/$name:$ver" stamp="$DIR/$name.pushed"
		# Pushed already from this very binary, and the registry still holds it: nothing to do.
		if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(sha256sum <"$bin" | cut -c1-64)" ] &&
			"$crane" digest --insecure "$ref" >/dev/null 2>&1; then
			continue
		fi
		local tmp
		tmp="$(mktemp -d)"
		mkdir -p "$tmp/root"
		install -m 0755 "$bin" "$tmp/root/$name"
		tar --sort=name --mtime=@0 --owner=0 --group=0 -C "$tmp/root" -cf "$tmp/layer.tar" .
		"$crane" append --insecure --oci-empty-base -f "$tmp/layer.tar" -t "$ref" >/dev/null 2>&1
		"$crane" mutate --insecure "$ref" --entrypoint "/$name" --set-platform linux/amd64 -t "$ref" >/dev/null 2>&1
		rm -rf "$tmp"
		sha256sum <"$bin" | cut -c1-64 >"$stamp"
		log "pushed $ref"
	done
}

case "$part" in
k8s) build_k8s ;;
sidecars) build_sidecars ;;
images) push_images ;;
all)
	start=$SECONDS
	parallel <<-EOC
		build_k8s
		build_sidecars
	EOC
	log "binaries ready after $((SECONDS - start)) s"
	push_images
	;;
esac
