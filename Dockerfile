# syntax=docker/dockerfile:1
# The rds-csi image, one for the controller and the node plugin (the Helm chart picks the mode and
# the user per container: the controller runs as 65532, the node plugin privileged as root).
#   docker build -t ghcr.io/srvlab/rds-csi:v0.1.0 .
# Build it from a git checkout: the version and commit that `rds-csi --version` prints are stamped
# by the Go toolchain from .git (-buildvcs=true; a tagged commit prints its tag, any other commit a
# pseudo-version ending in its hash, "+dirty" when the tree has changes).
# `make image` builds the same image without Docker (hack/image.sh); test/image checks that one.

ARG GO_VERSION=1.26
ARG DEBIAN_SUITE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_SUITE} AS build
ENV GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -buildvcs=true -ldflags "-s -w" -o /out/rds-csi ./cmd/rds-csi \
	&& /out/rds-csi --version \
	&& go version -m /out/rds-csi | grep -E 'vcs\.(revision|modified)'

FROM debian:${DEBIAN_SUITE}-slim
# The tools the node service runs: nvme (nvme-cli); mkfs.ext4, fsck.ext4, resize2fs (e2fsprogs);
# mkfs.xfs, xfs_growfs (xfsprogs); blkid, blockdev, losetup, fsck (util-linux); mount, umount
# (mount). Keep this list in step with PACKAGES in hack/image.sh (test/image checks both).
RUN apt-get update \
	&& apt-get install -y --no-install-recommends nvme-cli e2fsprogs xfsprogs util-linux mount \
	&& rm -rf /var/lib/apt/lists/* /var/cache/apt/* /usr/share/doc/* /usr/share/man/* \
	&& groupadd --gid 65532 nonroot \
	&& useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin nonroot
COPY --from=build /out/rds-csi /usr/local/bin/rds-csi
LABEL org.opencontainers.image.title=rds-csi \
	org.opencontainers.image.source=https://github.com/srvlab/rds-csi
# No USER: the node plugin needs root (nvme connect, mkfs, mount) and the chart's node container
# sets no runAsUser; the controller's pod sets runAsUser 65532 and runAsNonRoot.
ENTRYPOINT ["/usr/local/bin/rds-csi"]
