#!/usr/bin/env bash
# hack/deps.sh: the one place that installs what rds-csi's demo and tests need on this machine.
#
#   hack/deps.sh           check every tool, then install the Debian packages of the missing ones
#   hack/deps.sh --check   check only: name what is missing and exit 1, install nothing
#
# Every tool is looked up on the caller's PATH, the one the demo and the tests will run with. A
# missing tool is named with the Debian package that provides it before anything is installed.
# Nothing is installed, and apt-get update is not run, when everything is present. When something
# is missing and cannot be installed here (not root, no apt-get, or Go), the script lists it and
# exits 1, so `make demo` stops before it starts anything.
set -euo pipefail
# Only bash builtins until the check has run: the PATH may hold nothing at all.
case "$0" in */*) cd "${0%/*}/.." ;; *) cd .. ;; esac

mode=install
case "${1:-}" in
"") ;;
--check) mode=check ;;
-h | --help)
	while IFS= read -r line; do
		case "$line" in "#!"*) ;; "#"*) line=${line#\#}; echo "${line# }" ;; *) break ;; esac
	done <"$0"
	exit 0
	;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

# tool:Debian package (Debian 12: mount, umount and losetup are in "mount", blkid in "util-linux").
tools=(
	mkfs.xfs:xfsprogs
	xfs_growfs:xfsprogs
	mkfs.ext4:e2fsprogs
	resize2fs:e2fsprogs
	blkid:util-linux
	fsck:util-linux
	losetup:mount
	mount:mount
	umount:mount
	nvme:nvme-cli
	# test/cluster: a real kubelet's container runtime and its (loopback-only) CNI plugin.
	containerd:containerd
	runc:runc
	/usr/lib/cni/loopback:containernetworking-plugins
)
# Go comes from go.dev, not from Debian (golang-go in Debian is older than go.mod asks for).
go_version=unknown
while read -r word version _; do
	if [ "$word" = go ]; then
		go_version=$version
		break
	fi
done <go.mod

# check sets missing (messages), pkgs (Debian packages to install: those of missing tools that
# are not installed), off_path (tools whose package is installed but that are not on PATH) and
# go_missing.
check() {
	missing=()
	pkgs=()
	off_path=()
	go_missing=false
	local entry tool pkg note
	for entry in "${tools[@]}"; do
		tool=${entry%%:*}
		pkg=${entry#*:}
		command -v "$tool" >/dev/null 2>&1 && continue
		if command -v dpkg >/dev/null 2>&1 && dpkg -s "$pkg" >/dev/null 2>&1; then
			missing+=("$tool missing: Debian package $pkg (installed, but $tool is not on PATH=$PATH)")
			off_path+=("$tool")
			continue
		fi
		missing+=("$tool missing: Debian package $pkg")
		[[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
	done
	if ! command -v go >/dev/null 2>&1; then
		go_missing=true
		missing+=("go missing: Go $go_version or newer from https://go.dev/dl/ (unpack into /usr/local/go, put /usr/local/go/bin on PATH); Debian's golang-go is too old")
	fi
}

report() {
	local m
	for m in "${missing[@]}"; do
		echo "deps: $m" >&2
	done
}

check
if [ "${#missing[@]}" -eq 0 ]; then
	echo "deps: all present (mkfs.xfs mkfs.ext4 blkid losetup mount umount nvme go ...); nothing to install"
	exit 0
fi
report

if [ "$mode" = check ]; then
	echo "deps: --check: installing nothing; run hack/deps.sh as root to install the packages above" >&2
	exit 1
fi

# hints says what the script cannot do by itself, for what is still missing.
hints() {
	if [ "${#off_path[@]}" -gt 0 ]; then
		echo "deps: add the directories of ${off_path[*]} (usually /usr/sbin and /sbin) to PATH, then run again" >&2
	fi
	if $go_missing; then
		echo "deps: Go is not installed by this script: install it as above, then run again" >&2
	fi
}

if [ "${#pkgs[@]}" -eq 0 ]; then # nothing apt-get could fix
	hints
	exit 1
fi
if [ "$EUID" -ne 0 ]; then
	echo "deps: cannot install (not root): install ${pkgs[*]} (apt-get install ${pkgs[*]}), then run again" >&2
	hints
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: cannot install (no apt-get on this machine): install what provides the tools above, then run again" >&2
	hints
	exit 1
fi

echo "deps: installing ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}"

check
if [ "${#missing[@]}" -gt 0 ]; then
	report
	[ "${#pkgs[@]}" -eq 0 ] || echo "deps: still missing after apt-get install ${pkgs[*]}" >&2
	hints
	exit 1
fi
echo "deps: all present"
