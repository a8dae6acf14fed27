#!/bin/bash
# Build a flashable peercam SD card image for Raspberry Pi 3, 4 and Zero 2 (arm64).
#
#   image-build/build.sh [--base debian|raspios] [--out DIR] [--no-xz]
#
# Output: DIR/peercam-<version>-<base>-arm64.img.xz and its .sha256 (DIR defaults to
# image-build/out). Needs root, mmdebstrap, qemu-user-static with binfmt_misc,
# dosfstools, mtools, fdisk (sfdisk), e2fsprogs and xz; `make image` installs them.
# No loop devices or mounts: both partitions are made as files and written into the
# image at their offsets.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
BASE=debian
OUT=$HERE/out
COMPRESS=yes
while [ $# -gt 0 ]; do
    case $1 in
        --base) BASE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-xz) COMPRESS=no; shift ;;
        *) echo "usage: $0 [--base debian|raspios] [--out DIR] [--no-xz]" >&2; exit 2 ;;
    esac
done
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
CACHE=$HERE/cache
SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
RPI_ARCHIVE=http://archive.raspberrypi.com/debian
BOOT_MB=256
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
started=$(date +%s)

[ "$(id -u)" -eq 0 ] || { echo "build.sh: run as root (mmdebstrap --mode=root, file ownership)" >&2; exit 1; }
case $BASE in
    debian)
        # Debian's own kernel and the Pi firmware packaged by Debian: Pi 3, 4, Zero 2.
        KERNEL_PACKAGES="linux-image-arm64,raspi-firmware"
        EXTRA_SOURCES=()
        ;;
    raspios)
        # Raspberry Pi OS Lite's packages: its kernels (Pi 5 too), libcamera and
        # picamera2 for the Camera Modules. Only its archive has them.
        KEYRING=${RPI_KEYRING:-/usr/share/keyrings/raspberrypi-archive-keyring.gpg}
        missing=()
        curl -fsS --max-time 15 -o /dev/null "$RPI_ARCHIVE/dists/$SUITE/InRelease" \
            || missing+=("the archive $RPI_ARCHIVE ($SUITE main) is not reachable from here")
        [ -r "$KEYRING" ] \
            || missing+=("its signing key $KEYRING (package raspberrypi-archive-keyring, from that archive; or set RPI_KEYRING)")
        if [ ${#missing[@]} -gt 0 ]; then
            echo "build.sh: cannot build the Raspberry Pi OS base:" >&2
            printf '  - %s\n' "${missing[@]}" >&2
            echo "  It would add: linux-image-rpi-v8 linux-image-rpi-2712 raspi-firmware (Raspberry Pi's)" >&2
            echo "  raspberrypi-sys-mods python3-picamera2 python3-libcamera libcamera-ipa" >&2
            echo "  network-manager, from $RPI_ARCHIVE $SUITE main on top of Debian $SUITE." >&2
            echo "  The Debian base (--base debian) builds without it." >&2
            exit 3
        fi
        KERNEL_PACKAGES="linux-image-rpi-v8,linux-image-rpi-2712,raspi-firmware,raspberrypi-sys-mods,python3-picamera2,python3-libcamera,libcamera-ipa,network-manager"
        EXTRA_SOURCES=("deb [signed-by=$KEYRING] $RPI_ARCHIVE $SUITE main")
        ;;
    *) echo "build.sh: --base is debian or raspios" >&2; exit 2 ;;
esac

for tool in mmdebstrap mkfs.vfat mcopy sfdisk mkfs.ext4 xz; do
    command -v $tool >/dev/null || { echo "build.sh: $tool is missing (make image installs it)" >&2; exit 1; }
done
# arm64 maintainer scripts run under qemu-user through binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
        || { echo "build.sh: cannot register qemu-aarch64 with binfmt_misc" >&2; exit 1; }
fi

WORK=$(mktemp -d /var/tmp/peercam-image.XXXXXX)
cleanup() {
    # mmdebstrap mounts /proc, /sys and /dev inside the root; never delete through them.
    grep -o " ${WORK}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l || true
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
ROOT=$WORK/root
mkdir -p "$OUT" "$CACHE/wheels"

# The key update bundles must be signed with: UPDATE_KEY (a public key, PEM), else
# one this build makes once and keeps in image-build/keys/ (git ignores it): sign
# bundles for these cards with its private half (scripts/make-update-bundle.py).
KEYS=$HERE/keys
if [ -z "${UPDATE_KEY:-}" ]; then
    UPDATE_KEY=$KEYS/peercam-update-public.pem
    if [ ! -e "$UPDATE_KEY" ]; then
        say "update key: making a signing key pair in $KEYS"
        "$PYTHON" "$REPO/scripts/make-update-bundle.py" keygen "$KEYS" >&2
    fi
fi
[ -r "$UPDATE_KEY" ] || { echo "build.sh: cannot read the update key $UPDATE_KEY" >&2; exit 1; }

say "wheels: peercam and its dependencies for aarch64 (PyPI), sdists where none"
"$PYTHON" "$HERE/fetch_wheels.py" --repo "$REPO" --cache "$CACHE/wheels" --out "$WORK/wheels"
VERSION=$(ls "$WORK/wheels" | sed -n 's/^peercam-\([^-]*\)-.*/\1/p' | head -1)

# One disk identifier per build: the kernel finds its root as PARTUUID=<id>-02 on a
# Pi's SD card and on qemu's virtio disk alike.
DISK_ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')

say "root file system: Debian $SUITE arm64 with mmdebstrap ($BASE base)"
sources=("deb $MIRROR $SUITE main non-free-firmware" "deb $MIRROR $SUITE-updates main non-free-firmware"
         "deb http://deb.debian.org/debian-security $SUITE-security main non-free-firmware"
         "${EXTRA_SOURCES[@]}")
packages="systemd-sysv,udev,kmod,initramfs-tools,zstd,$KERNEL_PACKAGES"
packages+=",firmware-brcm80211,wpasupplicant,iw,wireless-regdb,systemd-resolved,systemd-timesyncd"
packages+=",avahi-daemon,openssh-server,ca-certificates,python3,libasound2,cloud-guest-utils"
packages+=",e2fsprogs,dosfstools,fdisk,iproute2,iputils-ping,less,nano"
printf '%s\n' "${sources[@]}" > "$WORK/sources.list"
mmdebstrap --mode=root --architectures=arm64 --variant=apt --format=directory \
    --include="$packages" \
    --dpkgopt="$HERE/dpkg-nodoc.cfg" \
    --setup-hook="mkdir -p \"\$1/etc/initramfs-tools/conf.d\" \"\$1/boot/firmware\"" \
    --setup-hook="cp $HERE/initramfs.conf \"\$1/etc/initramfs-tools/conf.d/peercam.conf\"" \
    --essential-hook="$HERE/initramfs-once.sh defer \"\$1\"" \
    --customize-hook="cp -a $HERE/rootfs/. \"\$1/\"" \
    --customize-hook="mkdir -p \"\$1/tmp/peercam\" && cp -a $WORK/wheels $REPO/scripts $REPO/systemd $HERE/customize.sh \$1/tmp/peercam/" \
    --customize-hook="cp $UPDATE_KEY \"\$1/tmp/peercam/update-key.pem\"" \
    --customize-hook="mv \"\$1/etc/resolv.conf\" \"\$1/etc/resolv.conf.image\" && cp -L /etc/resolv.conf \"\$1/etc/resolv.conf\"" \
    --customize-hook="chroot \"\$1\" env DISK_ID=$DISK_ID BASE=$BASE sh /tmp/peercam/customize.sh" \
    --customize-hook="mv \"\$1/etc/resolv.conf.image\" \"\$1/etc/resolv.conf\"" \
    --customize-hook="cp -n \$1/tmp/peercam/built/*.whl $CACHE/wheels/ 2>/dev/null || true" \
    --customize-hook="$PYTHON $HERE/compile_bytecode.py \"\$1\" /opt/peercam" \
    --customize-hook="echo ROOTPART=PARTUUID=$DISK_ID-02 >> \"\$1/etc/default/raspi-firmware\"" \
    --customize-hook="echo 'CONSOLES=\"ttyS1,115200 tty0\"' >> \"\$1/etc/default/raspi-firmware\"" \
    --customize-hook="$HERE/initramfs-once.sh generate \"\$1\"" \
    --customize-hook="rm -rf \"\$1/tmp/peercam\"" \
    "$SUITE" "$ROOT" "$WORK/sources.list"

say "partitions as files: FAT boot (${BOOT_MB} MiB), ext4 root"
cp "$HERE/boot/peercam.txt" "$ROOT/boot/firmware/peercam.txt"
# cmdline.txt names the root by PARTUUID: raspi-firmware wrote it from ROOTPART above,
# and writes it so again on every kernel update on the camera. Its consoles are named
# (CONSOLES above) because left to itself raspi-firmware picks them from the /dev of
# the machine it runs on, here the build host's, which has no ttyS1: the card had no
# serial console until the camera's first kernel update. The Pi's serial port (ttyS1,
# GPIO 14/15) gets the kernel's messages and a login prompt; the screen, last, is
# /dev/console and shows systemd's too.
grep -q "console=ttyS1,115200 console=tty0 root=PARTUUID=$DISK_ID-02" "$ROOT/boot/firmware/cmdline.txt"
rm -f "$WORK/boot.img"
mkfs.vfat -C -F 32 -n PEERCAMBOOT -i "$DISK_ID" "$WORK/boot.img" $((BOOT_MB * 1024)) >/dev/null
mcopy -s -p -i "$WORK/boot.img" "$ROOT"/boot/firmware/* ::/
find "$ROOT/boot/firmware" -mindepth 1 -delete  # the mount point stays, empty
say "data partition: everything that changes, moved off the read-only root"
# Each directory the camera writes is a mount point on the root (left empty) and a
# directory of the data partition bound onto it (customize.sh's fstab); ownership
# and modes go with it (mkfs.ext4 -d keeps them).
DATA=$WORK/data
mkdir -p "$DATA"
peercam_ids=$(awk -F: '$1 == "peercam" { print $3 ":" $4 }' "$ROOT/etc/passwd")
journal_gid=$(awk -F: '$1 == "systemd-journal" { print $3 }' "$ROOT/etc/group")
mkdir -p "$ROOT/var/lib/peercam" && chown "$peercam_ids" "$ROOT/var/lib/peercam" && chmod 700 "$ROOT/var/lib/peercam"
chmod 700 "$ROOT/var/lib/ssh-host-keys"
chown "0:$journal_gid" "$ROOT/var/log/journal" && chmod 2755 "$ROOT/var/log/journal"
for pair in var/lib/peercam:peercam etc/peercam:etc-peercam var/lib/peercam-releases:releases \
        var/lib/systemd:systemd var/lib/ssh-host-keys:ssh-host-keys var/log/journal:journal; do
    from=$ROOT/${pair%%:*} to=$DATA/${pair##*:}
    mkdir -p "$to"
    cp -a "$from/." "$to/"
    chown --reference="$from" "$to" && chmod --reference="$from" "$to"
    find "$from" -mindepth 1 -delete
done
# Room for the root's own growth (updates of Debian's packages) but no more: it
# stays this size; the data partition takes the rest of the card at first boot.
root_mb=$(( $(du -sm "$ROOT" | cut -f1) * 125 / 100 + 256 ))
mkfs.ext4 -q -L peercam-root -d "$ROOT" "$WORK/root.img" "${root_mb}M"
DATA_MB=256
mkfs.ext4 -q -L peercam-data -d "$DATA" "$WORK/data.img" "${DATA_MB}M"

say "image: MBR with three partitions (data grows to the card's size at first boot)"
IMAGE=$OUT/peercam-$VERSION-$BASE-arm64.img
boot_start=8192  # 4 MiB: erase-block aligned
root_start=$(( boot_start + BOOT_MB * 2048 ))
root_sectors=$(( root_mb * 2048 ))
data_start=$(( root_start + root_sectors ))
data_sectors=$(( DATA_MB * 2048 ))
rm -f "$IMAGE" "$IMAGE.xz"
truncate -s $(( (data_start + data_sectors) * 512 )) "$IMAGE"
sfdisk -q "$IMAGE" <<TABLE
label: dos
label-id: 0x$DISK_ID
start=$boot_start, size=$(( BOOT_MB * 2048 )), type=c, bootable
start=$root_start, size=$root_sectors, type=83
start=$data_start, size=$data_sectors, type=83
TABLE
dd if="$WORK/boot.img" of="$IMAGE" bs=1M seek=$(( boot_start / 2048 )) conv=notrunc,sparse status=none
dd if="$WORK/root.img" of="$IMAGE" bs=1M seek=$(( root_start / 2048 )) conv=notrunc,sparse status=none
dd if="$WORK/data.img" of="$IMAGE" bs=1M seek=$(( data_start / 2048 )) conv=notrunc,sparse status=none
echo "$DISK_ID" > "$IMAGE.disk-id"

if [ $COMPRESS = yes ]; then
    say "compressing"
    xz -T0 -6 -f -k "$IMAGE"
    (cd "$OUT" && sha256sum "$(basename "$IMAGE").xz" > "$(basename "$IMAGE").xz.sha256")
fi
(cd "$OUT" && sha256sum "$(basename "$IMAGE")" > "$(basename "$IMAGE").sha256")
say "done in $(( $(date +%s) - started )) s: $IMAGE$([ $COMPRESS = yes ] && echo .xz)"
