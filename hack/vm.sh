#!/usr/bin/env bash
# hack/vm.sh: a small Linux guest with the kernel's NVMe/TCP (initiator and nvmet target), for the
# tests that need what this host's kernel lacks. qemu runs it under TCG (no KVM here).
#
#   hack/vm.sh build           build the guest once (cached), print its directory
#   hack/vm.sh run SHARE       boot it; SHARE (a host directory) is mounted at /share in the guest,
#                              its run.sh runs as root, then the guest powers off. The serial
#                              console is this script's standard output. Exit status: qemu's.
#
# The guest is Debian's own kernel (linux-image-amd64, fetched with apt-get download) and one
# uncompressed initramfs: busybox, the kernel modules the tests load (nvme-tcp, nvmet, nvmet-tcp,
# loop, xfs, ext4, dm-mod, 9p) with their dependencies, and this host's nvme-cli, util-linux,
# e2fsprogs, xfsprogs and dmsetup binaries with their shared libraries (host and guest are both
# Debian 12, so the binaries are the ones the node image ships). Everything lives under
# $RDS_CSI_CACHE/vm (default /var/cache/rds-csi/vm), in a directory named after the kernel package
# and a hash of this script and of the host tools, so a change to either builds a new guest.
#
# Environment: RDS_CSI_CACHE; VM_MEM (MiB, 2048), VM_CPUS (2), VM_TIMEOUT (seconds, 3600: qemu is
# killed past it).
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${RDS_CSI_CACHE:-/var/cache/rds-csi}/vm
export LC_ALL=C

# tools the guest needs from this host: the node service's (mkfs, blkid, mount, resize, nvme), the
# tests' (dmsetup, losetup, blockdev) and fsck's helpers.
host_tools=(
	/usr/sbin/nvme /usr/bin/mount /usr/bin/umount /usr/sbin/blkid /usr/sbin/losetup /usr/sbin/blockdev
	/usr/sbin/fsck /usr/sbin/fsck.ext4 /usr/sbin/e2fsck /usr/sbin/mke2fs /usr/sbin/mkfs.ext4
	/usr/sbin/resize2fs /usr/sbin/dumpe2fs /usr/sbin/tune2fs /usr/sbin/mkfs.xfs /usr/sbin/xfs_growfs
	/usr/sbin/xfs_repair /usr/sbin/fsck.xfs /usr/sbin/xfs_io /usr/sbin/xfs_db /usr/sbin/dmsetup
)
# Debian package of each tool directory entry above, installed when missing.
host_pkgs=(qemu-system-x86 busybox-static nvme-cli mount util-linux e2fsprogs xfsprogs dmsetup)
modules=(virtio_pci 9pnet_virtio 9p crc32c_generic loop dm-mod ext4 xfs nvme-tcp nvmet nvmet-tcp)

log() { echo "vm.sh: $*" >&2; }

ensure_host_pkgs() {
	local missing=() p
	for p in "${host_pkgs[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	if [ "$EUID" -ne 0 ]; then
		log "missing Debian packages ${missing[*]} and not root: apt-get install ${missing[*]}"
		exit 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
	}
}

# kernel_pkg prints the versioned package linux-image-amd64 depends on (e.g. linux-image-6.1.0-57-amd64);
# a kernel fetched before is kept, so that the guest does not change (or need the network) each
# time Debian's package lists move on.
kernel_pkg() {
	local p d
	for d in "$cache"/kernel-*/done; do
		if [ -f "$d" ]; then
			d=${d%/done}
			echo "${d##*/kernel-}"
			return 0
		fi
	done
	p=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	if [ -z "$p" ]; then
		apt-get update -qq >&2
		p=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	fi
	[ -n "$p" ] || { log "apt-cache knows no linux-image-amd64"; exit 1; }
	echo "$p"
}

# fetch_kernel DIR PKG: the package's vmlinuz and modules tree in DIR (kept: it is the slow part).
fetch_kernel() {
	local dir=$1 pkg=$2
	[ -f "$dir/done" ] && return 0
	rm -rf "$dir" && mkdir -p "$dir/deb"
	(cd "$dir/deb" && { apt-get download "$pkg" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "$pkg"; }; }) || {
		log "apt-get download $pkg failed"
		return 1
	}
	dpkg-deb -x "$dir"/deb/*.deb "$dir/root"
	rm -rf "$dir/deb"
	touch "$dir/done"
}

# copy_with_libs ROOT FILE...: each file and the shared libraries it loads, at their host paths.
copy_with_libs() {
	local root=$1 f lib
	shift
	for f in "$@"; do
		mkdir -p "$root$(dirname "$f")"
		cp -L "$f" "$root$f"
		for lib in $(ldd "$f" 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib/ {print $1}'); do
			[ -e "$root$lib" ] && continue
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		done
	done
}

# add_modules ROOT KROOT KVER: the wanted modules and what they depend on (modules.dep from busybox
# depmod: the package ships none).
add_modules() {
	local root=$1 kroot=$2 kver=$3 m line dep
	local mdir=$kroot/lib/modules/$kver
	[ -f "$mdir/modules.dep" ] || busybox depmod -b "$kroot" "$kver"
	declare -A want=()
	for m in "${modules[@]}"; do
		line=$(grep -E "/${m}\.ko:" "$mdir/modules.dep") || {
			log "module $m not in $kver"
			exit 1
		}
		for dep in ${line%%:*} ${line#*:}; do
			want[$dep]=1
		done
	done
	for dep in "${!want[@]}"; do
		mkdir -p "$root/lib/modules/$kver/$(dirname "$dep")"
		cp "$mdir/$dep" "$root/lib/modules/$kver/$dep"
	done
	cp "$mdir/modules.builtin" "$mdir/modules.order" "$root/lib/modules/$kver/" 2>/dev/null || true
}

write_init() {
	local root=$1 kver=$2
	cat >"$root/init" <<EOF
#!/bin/sh
# Guest init (written by hack/vm.sh): mounts, modules, loopback, the share; runs /share/run.sh.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp DM_DISABLE_UDEV=1
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /data /share /etc/nvme
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o size=75% tmpfs /data
ln -sf /proc/self/mounts /etc/mtab
depmod $kver
for m in ${modules[*]}; do modprobe \$m || echo "rds-csi-vm: modprobe \$m failed"; done
mount -t configfs configfs /sys/kernel/config
ip link set lo up
hostname rds-csi-vm
uuid=\$(cat /proc/sys/kernel/random/uuid)
echo "nqn.2014-08.org.nvmexpress:uuid:\$uuid" >/etc/nvme/hostnqn; echo "\$uuid" >/etc/nvme/hostid
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 share /share; then
	echo "rds-csi-vm: up after \$(cut -d' ' -f1 /proc/uptime)s, kernel \$(uname -r), \$(nproc) CPUs"
	sh /share/run.sh
	echo "rds-csi-vm: run.sh exited \$? after \$(cut -d' ' -f1 /proc/uptime)s"
else
	echo "rds-csi-vm: cannot mount the share"
fi
sync
poweroff -f
EOF
	chmod 755 "$root/init"
}

build() {
	ensure_host_pkgs
	local pkg kdir kver hash dir
	pkg=$(kernel_pkg)
	kdir=$cache/kernel-$pkg
	# The host tools' versions and this script decide the guest's content.
	hash=$( (cat "$0"; dpkg-query -W -f '${Package} ${Version}\n' "${host_pkgs[@]}") | sha256sum | cut -c1-12)
	dir=$cache/guest-$pkg-$hash
	if [ -f "$dir/initrd.cpio" ] && [ -f "$dir/vmlinuz" ]; then
		echo "$dir"
		return 0
	fi
	mkdir -p "$cache"
	stage=$(mktemp -d "$cache/stage.XXXXXX") # global: the EXIT trap runs after build returns
	trap 'rm -rf "$stage"' EXIT
	# The kernel download and the host tools are independent: build them side by side.
	fetch_kernel "$kdir" "$pkg" &
	local kpid=$!
	local root=$stage/root
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,root,lib64}
	cp "$(command -v busybox)" "$root/bin/busybox"
	for a in $(busybox --list); do
		[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
	done
	copy_with_libs "$root" "${host_tools[@]}"
	cp /etc/mke2fs.conf "$root/etc/"
	echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
	echo "root:x:0:" >"$root/etc/group"
	wait "$kpid"
	kver=$(ls "$kdir/root/lib/modules")
	add_modules "$root" "$kdir/root" "$kver"
	write_init "$root" "$kver"
	(cd "$root" && find . | busybox cpio -o -H newc >"$stage/initrd.cpio" 2>/dev/null)
	cp "$kdir/root/boot/vmlinuz-$kver" "$stage/vmlinuz"
	rm -rf "$root"
	rm -rf "$dir"
	mv "$stage" "$dir"
	trap - EXIT
	# Older guests of this kernel or of other tool versions are of no use any more.
	for old in "$cache"/guest-*; do
		[ "$old" = "$dir" ] || rm -rf "$old"
	done
	log "guest built in $dir ($(du -sh "$dir/initrd.cpio" | cut -f1) initramfs)"
	echo "$dir"
}

run() {
	local share=$1 dir
	[ -f "$share/run.sh" ] || { log "$share/run.sh missing"; exit 2; }
	dir=$(build)
	# TCG: no KVM here. Multi-threaded TCG gives each vCPU a host thread.
	exec timeout -s KILL "${VM_TIMEOUT:-3600}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max \
		-smp "${VM_CPUS:-2}" -m "${VM_MEM:-2048}" -kernel "$dir/vmlinuz" -initrd "$dir/initrd.cpio" \
		-append "console=ttyS0 panic=-1 quiet loglevel=3 nvme_core.multipath=Y" \
		-display none -serial stdio -monitor none -nic none -no-reboot \
		-virtfs "local,path=$share,mount_tag=share,security_model=none,id=share"
}

case "${1:-}" in
build) build ;;
run)
	[ $# -eq 2 ] || { echo "usage: $0 run SHARE" >&2; exit 2; }
	run "$(realpath "$2")"
	;;
*)
	echo "usage: $0 build | run SHARE" >&2
	exit 2
	;;
esac
