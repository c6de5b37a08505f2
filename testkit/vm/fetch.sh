#!/bin/sh
# Fetches, once, what the netem test guest (testkit::vm) boots from into CACHE (default target/vm-cache):
#   CACHE/kernel/         Debian's linux-image-6.1.0-N-amd64 unpacked with dpkg -x, pruned to vmlinuz,
#                         modules.dep/modules.builtin and the module folders the guest may load
#   CACHE/openssh-server/ Debian's openssh-server unpacked with dpkg -x (the guest's sshd)
#   CACHE/libwrap0/       Debian's libwrap0 unpacked the same way (sshd links it; the host need not have it)
# Each folder holds a file PACKAGE (the exact package name and version) once complete; a complete folder is
# never fetched again. Needs `apt-get update` to have run (apt-get download uses the apt lists); not root.
set -eu
cache=${1:-target/vm-cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

die() { echo "testkit/vm/fetch.sh: $*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get missing: the guest's kernel and sshd come from Debian packages"
command -v dpkg >/dev/null || die "dpkg missing"

# The newest linux-image-6.1.0-N-amd64 (the signed image: vmlinuz plus its modules) that apt can download.
pick_kernel() {
  apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null | cut -d' ' -f1 | sort -V -r |
    while read -r pkg; do
      if apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then echo "$pkg"; break; fi
    done
}

# fetch NAME PACKAGE [PRUNE-FUNCTION]: download PACKAGE's candidate .deb and unpack it into $cache/NAME.
fetch() {
  name=$1 pkg=$2 prune=${3:-}
  [ -f "$cache/$name/PACKAGE" ] && return 0
  work=$(mktemp -d "$cache/.fetch-$name.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "testkit/vm/fetch.sh: downloading $pkg into $cache/$name" >&2
  sandbox=
  [ "$(id -u)" != 0 ] || sandbox="-o APT::Sandbox::User=root"
  # shellcheck disable=SC2086
  (cd "$work" && apt-get download -q $sandbox "$pkg" >&2) || die "apt-get download $pkg failed (run apt-get update first?)"
  deb=$(ls "$work"/*.deb)
  dpkg -x "$deb" "$work/root" || die "dpkg -x $deb failed"
  [ -z "$prune" ] || "$prune" "$work/root"
  basename "$deb" .deb >"$work/root/PACKAGE"
  rm -rf "$cache/$name"
  mv "$work/root" "$cache/$name"
  rm -rf "$work"
  trap - EXIT
}

# Keep vmlinuz and the modules a netem guest may want (network drivers, qdiscs, virtio); drop the other ~400 MB.
prune_kernel() {
  root=$1
  for dir in "$root"/lib/modules/*/; do
    keep=$(mktemp -d "$root/.keep.XXXXXX")
    for sub in kernel/net/sched kernel/net/core kernel/drivers/virtio kernel/drivers/net/virtio_net.ko \
      kernel/drivers/net/net_failover.ko kernel/lib; do
      [ -e "$dir/$sub" ] || continue
      mkdir -p "$keep/$(dirname "$sub")"
      mv "$dir/$sub" "$keep/$sub"
    done
    rm -rf "$dir/kernel"
    mv "$keep/kernel" "$dir/kernel" 2>/dev/null || true
    rm -rf "$keep"
  done
  rm -rf "$root/usr/share" "$root/usr/lib"
}

complete=yes
for name in kernel openssh-server libwrap0; do [ -f "$cache/$name/PACKAGE" ] || complete=; done
[ -z "$complete" ] || exit 0

kernel=$(pick_kernel)
[ -n "$kernel" ] || [ -f "$cache/kernel/PACKAGE" ] ||
  die "no linux-image-6.1.0-*-amd64 package known to apt (run apt-get update on a Debian bookworm machine)"
fetch kernel "${kernel:-unused}" prune_kernel
fetch openssh-server openssh-server
fetch libwrap0 libwrap0
ls "$cache"/kernel/boot/vmlinuz-* >/dev/null 2>&1 || die "no vmlinuz in $cache/kernel"
[ -x "$cache/openssh-server/usr/sbin/sshd" ] || die "no sshd in $cache/openssh-server"
echo "testkit/vm/fetch.sh: $(cat "$cache"/*/PACKAGE | tr '\n' ' ')in $cache" >&2
