#!/usr/bin/env bash
# `make image`: builds the rds-csi image (the same one the Dockerfile describes) without a Docker
# engine and without any outside image registry, then pushes it to a registry on loopback.
#   - base layer: Debian bookworm from Debian's packages (debootstrap --variant=minbase with the
#     node's tools), trimmed of docs, man pages and apt lists; made once, cached as a tar
#   - top layer: /usr/local/bin/rds-csi, built static (CGO_ENABLED=0) with the version and commit
#     stamped from git (what `rds-csi --version` prints)
#   - assembled with crane (installed once from Go modules), pushed to `crane registry serve` on
#     127.0.0.1:$RDS_CSI_REGISTRY_PORT (started here if nothing answers there; its blobs live in the
#     cache), and saved as an OCI image layout tarball in the cache
# Everything built goes under $RDS_CSI_CACHE (default /var/cache/rds-csi), never into the repository.
# Needs root (debootstrap, and the layers keep root ownership).
#   hack/image.sh               build and push; prints the image reference (the only stdout line)
#   hack/image.sh --print-dir   print the cache directory of the image files (no build)
#   hack/image.sh --print-crane print the path of the crane binary (no build)
set -euo pipefail
CRANE_VERSION=v0.22.1
SUITE=bookworm
# Keep in step with the Dockerfile's apt-get install line (test/image checks both).
PACKAGES=nvme-cli,e2fsprogs,xfsprogs,util-linux,mount
PORT="${RDS_CSI_REGISTRY_PORT:-5555}"
CACHE="${RDS_CSI_CACHE:-/var/cache/rds-csi}"
DIR="$CACHE/image"
CRANE="$CACHE/crane-$CRANE_VERSION/crane"
case "${1:-}" in
--print-dir) echo "$DIR"; exit 0 ;;
--print-crane) echo "$CRANE"; exit 0 ;;
"") ;;
*) echo "usage: $0 [--print-dir|--print-crane]" >&2; exit 2 ;;
esac

REGISTRY="127.0.0.1:$PORT"
# debootstrap runs again when the suite or the package list changes; the base layer is packed
# again when the trimming below changes too (trim_rootfs is idempotent).
ROOTFS_KEY="$(printf '%s\n' "$SUITE" "$PACKAGES" | sha256sum | cut -c1-12)"
BASE_KEY="$(printf '%s\n' "$ROOTFS_KEY" "$(sed -n '/^trim_rootfs()/,/^}/p' "$0")" | sha256sum | cut -c1-12)"
ROOTFS="$DIR/rootfs-$SUITE-$ROOTFS_KEY"
BASE_TAR="$DIR/base-$SUITE-$BASE_KEY.tar"
BASE_REF="$REGISTRY/rds-csi-base:$SUITE-$BASE_KEY"
# A fixed time for every file the script writes, so unchanged inputs give unchanged layers.
EPOCH=0
export GOTOOLCHAIN=local

log() { echo "image: $*" >&2; }
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ "$(id -u)" = 0 ] || { log "must run as root (debootstrap, root-owned layers)"; exit 1; }
mkdir -p "$DIR"
# One build at a time (make image and test/image may overlap).
exec 9>"$DIR/lock"
flock 9
start=$SECONDS

# --- crane, once -----------------------------------------------------------------------------
if [ ! -x "$CRANE" ]; then
	log "installing crane $CRANE_VERSION (first run only)"
	mkdir -p "$(dirname "$CRANE")"
	(cd / && GOFLAGS= GOBIN="$(dirname "$CRANE")" go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION")
fi

# --- the loopback registry ---------------------------------------------------------------------
registry_up() { "$CRANE" catalog --insecure "$REGISTRY" >/dev/null 2>&1; }
if ! registry_up; then
	log "starting crane registry serve on $REGISTRY (blobs in $DIR/registry)"
	mkdir -p "$DIR/registry"
	# Detached, stdio away from ours: a caller reading our output must not wait for the registry.
	# Without the build lock (fd 9): the registry outlives this build, and holding the lock it
	# would block every later one.
	setsid "$CRANE" registry serve --address "$REGISTRY" --disk "$DIR/registry" \
		</dev/null >>"$DIR/registry.log" 2>&1 9>&- &
	echo $! >"$DIR/registry.pid"
	for _ in $(seq 50); do registry_up && break; sleep 0.1; done
	registry_up || { log "registry did not come up on $REGISTRY; see $DIR/registry.log"; exit 1; }
fi

# --- base layer, once --------------------------------------------------------------------------
trim_rootfs() {
	local r="$1"
	rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* \
		"$r"/usr/share/lintian "$r"/usr/share/linda \
		"$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
		"$r"/var/log/* "$r"/tmp/* "$r"/var/tmp/* "$r"/dev/* "$r"/proc/* "$r"/sys/* "$r"/run/*
	# As in Debian's container images: tools that look for mounts (resize2fs, fsck) read /etc/mtab.
	[ -e "$r/etc/mtab" ] || [ -L "$r/etc/mtab" ] || ln -s ../proc/self/mounts "$r/etc/mtab"
	# The controller's user (the chart runs it as 65532); the node plugin runs as root.
	grep -q '^nonroot:' "$r/etc/group" || echo 'nonroot:x:65532:' >>"$r/etc/group"
	grep -q '^nonroot:' "$r/etc/passwd" ||
		echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin' >>"$r/etc/passwd"
}
if [ ! -f "$BASE_TAR" ]; then
	if [ ! -d "$ROOTFS" ]; then
		if ! command -v debootstrap >/dev/null; then
			log "installing debootstrap"
			apt-get install -y debootstrap >&2 || { apt-get update >&2 && apt-get install -y debootstrap >&2; }
		fi
		log "debootstrap $SUITE with $PACKAGES (first run only, about a minute or two)"
		rm -rf "$ROOTFS.partial"
		# Mirror: debootstrap's default unless DEBOOTSTRAP_MIRROR is set.
		debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS.partial" \
			${DEBOOTSTRAP_MIRROR:+"$DEBOOTSTRAP_MIRROR"} >&2
		mv "$ROOTFS.partial" "$ROOTFS"
	fi
	log "packing the base layer"
	trim_rootfs "$ROOTFS"
	(cd "$ROOTFS" && tar --numeric-owner --sort=name --mtime=@$EPOCH --xattrs -cf "$BASE_TAR.partial" -- *)
	mv "$BASE_TAR.partial" "$BASE_TAR"
fi
if ! "$CRANE" digest --insecure "$BASE_REF" >/dev/null 2>&1; then
	log "pushing the base image $BASE_REF (compresses the base layer; once per registry)"
	"$CRANE" append --insecure --oci-empty-base -f "$BASE_TAR" -t "$BASE_REF" >/dev/null
fi

# --- rds-csi, every run --------------------------------------------------------------------------
BUILD="$DIR/build"
rm -rf "$BUILD"
mkdir -p "$BUILD/usr/local/bin"
log "building rds-csi (static, version and commit from git)"
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -buildvcs=true -ldflags "-s -w" \
	-o "$BUILD/usr/local/bin/rds-csi" ./cmd/rds-csi)
version="$("$BUILD/usr/local/bin/rds-csi" --version)"
revision="$(go version -m "$BUILD/usr/local/bin/rds-csi" | sed -n 's/^[[:space:]]*build[[:space:]]*vcs.revision=//p')"
# An image tag allows [A-Za-z0-9_.-]: a dirty tree's "+dirty" becomes "-dirty".
tag="$(printf '%s' "$version" | tr -c 'A-Za-z0-9_.-' '-')"
REF="$REGISTRY/rds-csi:$tag"
(cd "$BUILD" && tar --numeric-owner --owner=0 --group=0 --mtime=@$EPOCH -cf "$DIR/rds-csi-layer.tar" usr/local/bin/rds-csi)

log "assembling $REF"
"$CRANE" append --insecure -b "$BASE_REF" -f "$DIR/rds-csi-layer.tar" -t "$REF" >/dev/null
"$CRANE" mutate --insecure "$REF" -t "$REF" \
	--entrypoint /usr/local/bin/rds-csi \
	--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	--label org.opencontainers.image.title=rds-csi \
	--label org.opencontainers.image.source=https://github.com/srvlab/rds-csi \
	--label org.opencontainers.image.version="$version" \
	--label org.opencontainers.image.revision="$revision" \
	--set-platform linux/amd64 >/dev/null

# The OCI image layout as a tarball (for `ctr images import` or `skopeo copy oci-archive:`).
rm -rf "$DIR/oci.partial"
"$CRANE" pull --insecure --format=oci "$REF" "$DIR/oci.partial" >/dev/null
(cd "$DIR/oci.partial" && tar --numeric-owner --sort=name -cf "$DIR/rds-csi-$tag.oci.tar.partial" -- *)
rm -rf "$DIR/oci.partial"
# Only the newest tarball is kept (about 85 MB each; the registry keeps every version).
find "$DIR" -maxdepth 1 -name 'rds-csi-*.oci.tar' ! -name "rds-csi-$tag.oci.tar" -delete
mv "$DIR/rds-csi-$tag.oci.tar.partial" "$DIR/rds-csi-$tag.oci.tar"
ln -sfn "rds-csi-$tag.oci.tar" "$DIR/rds-csi.oci.tar"

log "done in $((SECONDS - start))s: $REF ($("$CRANE" digest --insecure "$REF")), tarball $DIR/rds-csi-$tag.oci.tar"
echo "$REF"
