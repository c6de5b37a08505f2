#!/bin/sh
# Lays out the netem test guest's root file system (testkit::vm) in the empty or new folder OUT, from the
# packages testkit/vm/fetch.sh unpacked into CACHE and from this host's binaries:
#   - busybox-static's applets (init, mount, insmod, sleep, setsid, httpd, nc, ...) in /bin, with
#     /sbin, /usr/bin and /usr/sbin linked to /bin;
#   - dash as /bin/sh: busybox ash runs its own cut-down `tc` applet ahead of $PATH, so it must not be the shell;
#   - the host's real `tc`, `ip` and coreutils `nohup`, with the libraries ldd names (and tc's .dist tables);
#   - sshd from CACHE/openssh-server with its libraries (libwrap from CACHE/libwrap0), `UsePAM no`, a `sshd`
#     user, root's shadow field `*`;
#   - the kernel modules MODULES (default: sch_netem virtio_net virtio_pci) and everything they depend on,
#     listed in /etc/modules.load in load order for insmod;
#   - /etc/rc (run by busybox init): mounts, insmod, eth0 = 10.0.2.15/24 via 10.0.2.2 (QEMU user networking),
#     sshd on port 22, busybox httpd on port 8080 serving /srv/www (index.html is "ok").
# The per-boot parts (the SSH host key and root's authorized_keys) are not here: testkit::vm appends them to the
# initramfs as a second cpio archive. Prints the kernel release the modules are for on stdout.
set -eu
cache=$1 out=$2
modules=${MODULES:-sch_netem virtio_net virtio_pci}
die() { echo "testkit/vm/build-rootfs.sh: $*" >&2; exit 1; }

busybox=${BUSYBOX:-$(command -v busybox || true)}
[ -n "$busybox" ] || die "busybox missing (apt-get install busybox-static)"
file -L "$busybox" 2>/dev/null | grep -q 'dynamically linked' && die "$busybox is not static (install busybox-static)"
for tool in dash tc ip nohup ldd; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null ||
    die "$tool missing on this host (dash, iproute2, coreutils, libc-bin)"
done
kdir=$(ls -d "$cache"/kernel/lib/modules/*/ 2>/dev/null | head -n 1)
[ -n "$kdir" ] || die "no kernel modules under $cache/kernel (run testkit/vm/fetch.sh)"
release=$(basename "$kdir")
sshd=$cache/openssh-server/usr/sbin/sshd
[ -x "$sshd" ] || die "no sshd under $cache/openssh-server (run testkit/vm/fetch.sh)"

mkdir -p "$out"
cd "$out"
mkdir -p bin lib lib64 etc/ssh root/.ssh proc sys dev run tmp var/log srv/www usr "lib/modules/$release"
ln -s ../bin usr/bin
ln -s ../bin usr/sbin
ln -s bin sbin
chmod 700 root root/.ssh
chmod 1777 tmp

# busybox and its applets; init is busybox init (it reaps orphans, as PID 1 must).
cp "$busybox" bin/busybox
for applet in $("$busybox" --list); do
  [ -e "bin/$applet" ] || ln -s busybox "bin/$applet"
done
ln -s bin/busybox init

# copy_bin SRC NAME: a dynamically linked binary into /bin, and every library it needs at the same path.
libpath=
for d in "$cache"/libwrap0/lib/x86_64-linux-gnu "$cache"/libwrap0/usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && libpath=$libpath${libpath:+:}$d
done
copy_bin() {
  src=$1 name=$2
  rm -f "bin/$name"
  cp -L "$src" "bin/$name"
  LD_LIBRARY_PATH=$libpath ldd "$src" >ldd.out || die "ldd $src failed"
  if grep -q 'not found' ldd.out; then
    die "$src needs libraries this host lacks: $(grep 'not found' ldd.out | tr -s '\t\n' '  ')"
  fi
  # "libx.so.1 => /lib/.../libx.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
  for lib in $(sed -n -e 's/.*=> \(\/[^ ]*\) (0x.*/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p' ldd.out); do
    case $lib in
      "$cache"/*) dest=lib/x86_64-linux-gnu/$(basename "$lib") ;;
      *) dest=${lib#/} ;;
    esac
    [ -e "$dest" ] && continue
    mkdir -p "$(dirname "$dest")"
    cp -L "$lib" "$dest"
  done
  rm -f ldd.out
}
PATH=$PATH:/usr/sbin:/sbin
copy_bin "$(command -v dash)" dash
ln -sf dash bin/sh
copy_bin "$(command -v tc)" tc
copy_bin "$(command -v ip)" ip
copy_bin "$(command -v nohup)" nohup
copy_bin "$sshd" sshd
for dist in /usr/lib/x86_64-linux-gnu/tc /usr/lib/tc; do
  [ -d "$dist" ] || continue
  mkdir -p "${dist#/}"
  cp -L "$dist"/*.dist "${dist#/}/" 2>/dev/null || true
done

# Kernel modules: MODULES and their `depends=` (from each .ko's .modinfo: Debian ships no modules.dep), in an
# order where every module comes after what it depends on.
find "$kdir" -name '*.ko' >modules.all
path_of() { grep "/$1\.ko\$" modules.all | head -n 1; }
depends_of() { grep -a -o 'depends=[A-Za-z0-9_,-]*' "$1" | head -n 1 | cut -d= -f2 | tr ',' ' '; }
: >etc/modules.load
visit() {
  local name ko dep # recursive: dash, bash and busybox sh all have `local`
  name=$(echo "$1" | tr - _)
  grep -qx "$name" etc/modules.load && return 0
  ko=$(path_of "$name")
  if [ -z "$ko" ]; then
    grep -q "/$name\.ko\$" "$kdir/modules.builtin" 2>/dev/null && return 0
    die "kernel module $name not found under $kdir"
  fi
  for dep in $(depends_of "$ko"); do visit "$dep"; done
  grep -qx "$name" etc/modules.load && return 0
  cp "$ko" "lib/modules/$release/$name.ko"
  echo "$name" >>etc/modules.load
}
for m in $modules; do visit "$m"; done
rm -f modules.all

cat >etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
sshd:x:100:65534:sshd privilege separation:/run/sshd:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >etc/group <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
cat >etc/shadow <<'SHADOW'
root:*:19000:0:99999:7:::
sshd:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
SHADOW
chmod 640 etc/shadow
echo 'passwd: files' >etc/nsswitch.conf
echo 'group: files' >>etc/nsswitch.conf
echo 'shadow: files' >>etc/nsswitch.conf
echo '127.0.0.1 localhost' >etc/hosts
echo simian-guest >etc/hostname

cat >etc/ssh/sshd_config <<'SSHD'
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile /root/.ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
StrictModes no
PidFile /run/sshd.pid
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
SetEnv PATH=/bin
SSHD

echo ok >srv/www/index.html

cat >etc/inittab <<'INITTAB'
::sysinit:/etc/rc
::ctrlaltdel:/bin/poweroff -f
INITTAB

cat >etc/rc <<'RC'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -m 755 /run/sshd
hostname "$(cat /etc/hostname)"
while read -r m; do
  insmod "/lib/modules/$(uname -r)/$m.ko" || echo "simian-guest: insmod $m failed"
done </etc/modules.load
ip link set lo up
i=0
while ! ip link show eth0 >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
/bin/sshd -f /etc/ssh/sshd_config -E /run/sshd.log || echo "simian-guest: sshd failed: $(cat /run/sshd.log)"
httpd -p 8080 -h /srv/www || echo "simian-guest: httpd failed"
# Power off after simian.max_lifetime seconds, should the test that booted us die without killing QEMU.
max=$(sed -n 's/.*simian\.max_lifetime=\([0-9][0-9]*\).*/\1/p' /proc/cmdline)
[ -z "$max" ] || setsid sh -c "sleep $max; echo 'simian-guest: max lifetime reached'; poweroff -f" &
echo "simian-guest: ready ($(tc qdisc show dev eth0 | head -n 1))"
RC
chmod 755 etc/rc
echo "$release"
