#!/bin/bash
# Build a flashable peercam SD card image for Raspberry Pi 3, 4 and Zero 2 (arm64).
#
#   image-build/build.sh [--base debian|raspios] [--base-image FILE] [--plain-out FILE]
#                        [--out DIR] [--no-xz]
#
# Output: DIR/peercam-<version>-<base>-arm64.img.xz and its .sha256 (DIR defaults to
# image-build/out). With --base-image the root comes from an image someone downloaded
# (Raspberry Pi OS Lite, .img or .img.xz) instead of mmdebstrap, and the output is
# named after it. --plain-out also writes the Debian root, before peercam is added, as
# a two-partition image laid out like Raspberry Pi OS Lite's: the stand-in input for
# --base-image here, where Raspberry Pi's files cannot be downloaded.
# Needs root, mmdebstrap, qemu-user-static with binfmt_misc, dosfstools, mtools, fdisk
# (sfdisk), e2fsprogs and xz; `make image` installs them. No loop devices and no
# mounts of images: partitions are taken out of and put into image files with dd,
# and read or made as files (mtools, debugfs, mkfs -d).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
BASE=debian
BASE_IMAGE=
PLAIN_OUT=
OUT=$HERE/out
COMPRESS=yes
usage="usage: $0 [--base debian|raspios] [--base-image FILE] [--plain-out FILE] [--out DIR] [--no-xz]"
while [ $# -gt 0 ]; do
    case $1 in
        --base) BASE=$2; shift 2 ;;
        --base-image) BASE_IMAGE=$(realpath "$2"); shift 2 ;;
        --plain-out) PLAIN_OUT=$(realpath -m "$2"); shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-xz) COMPRESS=no; shift ;;
        *) echo "$usage" >&2; exit 2 ;;
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

[ "$(id -u)" -eq 0 ] || { echo "build.sh: run as root (mmdebstrap --mode=root, chroot, file ownership)" >&2; exit 1; }
if [ -n "$BASE_IMAGE" ]; then
    [ -r "$BASE_IMAGE" ] || { echo "build.sh: cannot read the base image $BASE_IMAGE" >&2; exit 2; }
    [ -z "$PLAIN_OUT" ] || { echo "build.sh: --plain-out needs the Debian base, not --base-image" >&2; exit 2; }
    stem=$(basename "$BASE_IMAGE"); stem=${stem%.xz}; stem=${stem%.img}
    BASE=image
fi
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
            echo "  The Debian base (--base debian) builds without it; or start from the" >&2
            echo "  Raspberry Pi OS Lite image file itself: make image BASE_IMAGE=FILE.img.xz" >&2
            exit 3
        fi
        KERNEL_PACKAGES="linux-image-rpi-v8,linux-image-rpi-2712,raspi-firmware,raspberrypi-sys-mods,python3-picamera2,python3-libcamera,libcamera-ipa,network-manager"
        EXTRA_SOURCES=("deb [signed-by=$KEYRING] $RPI_ARCHIVE $SUITE main")
        ;;
    image) ;;
    *) echo "build.sh: --base is debian or raspios" >&2; exit 2 ;;
esac

for tool in mmdebstrap mkfs.vfat mcopy sfdisk mkfs.ext4 debugfs xz; do
    command -v $tool >/dev/null || { echo "build.sh: $tool is missing (make image installs it)" >&2; exit 1; }
done
# arm64 programs (maintainer scripts, the installer) run under qemu-user through binfmt_misc.
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
        || { echo "build.sh: cannot register qemu-aarch64 with binfmt_misc" >&2; exit 1; }
fi

WORK=$(mktemp -d /var/tmp/peercam-image.XXXXXX)
cleanup() {
    # mmdebstrap and the chroot mount /proc, /sys and /dev inside the root; never
    # delete through them.
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

# Writes an image of two or three partition files: boot (FAT), root, and data if given.
assemble() {  # IMAGE DISK_ID BOOT_IMG ROOT_IMG [DATA_IMG]
    local image=$1 id=$2 boot=$3 root=$4 data=${5:-}
    local boot_start=8192  # 4 MiB: erase-block aligned
    local boot_sectors=$(( $(stat -c %s "$boot") / 512 ))
    local root_start=$(( boot_start + boot_sectors ))
    local root_sectors=$(( $(stat -c %s "$root") / 512 ))
    local data_start=$(( root_start + root_sectors ))
    local data_sectors=0
    [ -z "$data" ] || data_sectors=$(( $(stat -c %s "$data") / 512 ))
    rm -f "$image" "$image.xz"
    truncate -s $(( (data_start + data_sectors) * 512 )) "$image"
    {
        echo "label: dos"
        echo "label-id: 0x$id"
        echo "start=$boot_start, size=$boot_sectors, type=c, bootable"
        echo "start=$root_start, size=$root_sectors, type=83"
        [ -z "$data" ] || echo "start=$data_start, size=$data_sectors, type=83"
    } | sfdisk -q "$image"
    dd if="$boot" of="$image" bs=1M seek=$(( boot_start * 512 )) oflag=seek_bytes conv=notrunc,sparse status=none
    dd if="$root" of="$image" bs=1M seek=$(( root_start * 512 )) oflag=seek_bytes conv=notrunc,sparse status=none
    [ -z "$data" ] || dd if="$data" of="$image" bs=1M seek=$(( data_start * 512 )) oflag=seek_bytes conv=notrunc,sparse status=none
    echo "$id" > "$image.disk-id"
}

# ext4 root partition file from a directory, sized for the root's own growth
# (updates of its packages) but no more: on the card it stays this size.
root_partition() {  # FILE LABEL DIR
    mkfs.ext4 -q -L "$2" -d "$3" "$1" "$(( $(du -sm "$3" | cut -f1) * 125 / 100 + 256 ))M"
}

# FAT boot partition file of $2 MiB from a directory.
fat_partition() {  # FILE MB DIR LABEL ID
    rm -f "$1"
    mkfs.vfat -C -F 32 -n "$4" -i "$5" "$1" $(( $2 * 1024 )) >/dev/null
    mcopy -s -p -m -i "$1" "$3"/* ::/
}

if [ -n "$BASE_IMAGE" ]; then
    say "root file system: from $BASE_IMAGE"
    unpacked=$("$PYTHON" "$HERE/unpack_image.py" "$BASE_IMAGE" "$ROOT" --work "$WORK")
    DISK_ID=$(echo "$unpacked" | sed -n 's/^disk_id=//p')
    BOOT_MB=$(echo "$unpacked" | sed -n 's/^boot_mb=//p')
    BOOT_LABEL=$(echo "$unpacked" | sed -n 's/^boot_label=//p')
    [ -n "$BOOT_LABEL" ] || BOOT_LABEL=bootfs
else
    # One disk identifier per build: the kernel finds its root as PARTUUID=<id>-02 on
    # a Pi's SD card and on qemu's virtio disk alike.
    DISK_ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
    BOOT_LABEL=PEERCAMBOOT
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
        --setup-hook="mkdir -p \"\$1/etc/initramfs-tools/conf.d\" \"\$1/usr/share/initramfs-tools/modules.d\" \"\$1/boot/firmware\"" \
        --setup-hook="cp $HERE/initramfs.conf \"\$1/etc/initramfs-tools/conf.d/peercam.conf\"" \
        --setup-hook="cp $HERE/initramfs-modules \"\$1/usr/share/initramfs-tools/modules.d/peercam\"" \
        --essential-hook="$HERE/initramfs-once.sh defer \"\$1\"" \
        --customize-hook="echo ROOTPART=PARTUUID=$DISK_ID-02 >> \"\$1/etc/default/raspi-firmware\"" \
        --customize-hook="echo 'CONSOLES=\"ttyS1,115200 tty0\"' >> \"\$1/etc/default/raspi-firmware\"" \
        --customize-hook="$HERE/initramfs-once.sh generate \"\$1\"" \
        "$SUITE" "$ROOT" "$WORK/sources.list"
    # cmdline.txt names the root by PARTUUID: raspi-firmware wrote it from ROOTPART
    # above, and writes it so again on every kernel update on the camera. Its consoles
    # are named (CONSOLES above) because left to itself raspi-firmware picks them from
    # the /dev of the machine it runs on, here the build host's, which has no ttyS1:
    # the card had no serial console until the camera's first kernel update. The Pi's
    # serial port (ttyS1, GPIO 14/15) gets the kernel's messages and a login prompt;
    # the screen, last, is /dev/console and shows systemd's too.
    grep -q "console=ttyS1,115200 console=tty0 root=PARTUUID=$DISK_ID-02" "$ROOT/boot/firmware/cmdline.txt"
    if [ -n "$PLAIN_OUT" ]; then
        say "plain Debian image (no peercam), laid out like Raspberry Pi OS Lite: $PLAIN_OUT"
        printf '%s\n' "PARTUUID=$DISK_ID-01  /boot/firmware  vfat  defaults  0  2" \
            "PARTUUID=$DISK_ID-02  /  ext4  defaults,noatime  0  1" > "$ROOT/etc/fstab"
        echo debian > "$ROOT/etc/hostname"
        mv "$ROOT/boot/firmware" "$WORK/firmware" && mkdir "$ROOT/boot/firmware"
        fat_partition "$WORK/plain-boot.img" 512 "$WORK/firmware" bootfs "$DISK_ID"
        root_partition "$WORK/plain-root.img" rootfs "$ROOT"
        rmdir "$ROOT/boot/firmware" && mv "$WORK/firmware" "$ROOT/boot/firmware"
        assemble "$PLAIN_OUT" "$DISK_ID" "$WORK/plain-boot.img" "$WORK/plain-root.img"
        rm "$WORK/plain-boot.img" "$WORK/plain-root.img"
    fi
fi

say "peercam: the installer inside the root (offline, from the wheels), units, fstab"
cp -a "$HERE/rootfs/." "$ROOT/"
mkdir -p "$ROOT/tmp/peercam"
cp -a "$WORK/wheels" "$REPO/scripts" "$REPO/systemd" "$HERE/customize.sh" "$ROOT/tmp/peercam/"
cp "$UPDATE_KEY" "$ROOT/tmp/peercam/update-key.pem"
# The chroot gets the kernel's file systems and the host's resolver (apt may fetch
# security updates and unattended-upgrades); the root's own resolv.conf goes back.
for fs in dev dev/pts proc sys; do
    mkdir -p "$ROOT/$fs"
    mount --bind "/$fs" "$ROOT/$fs"
    mount --make-rslave "$ROOT/$fs"  # nothing mounted inside shows on the host
done
resolv_kept=no
if [ -e "$ROOT/etc/resolv.conf" ] || [ -L "$ROOT/etc/resolv.conf" ]; then
    mv "$ROOT/etc/resolv.conf" "$ROOT/etc/resolv.conf.image"; resolv_kept=yes
fi
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
chroot "$ROOT" env DISK_ID="$DISK_ID" BASE="$BASE" sh /tmp/peercam/customize.sh
rm "$ROOT/etc/resolv.conf"
[ $resolv_kept = no ] || mv "$ROOT/etc/resolv.conf.image" "$ROOT/etc/resolv.conf"
if [ -e "$ROOT/lib/systemd/system/NetworkManager.service" ]; then
    # Raspberry Pi OS ships a plain file (nameserver 8.8.8.8); NetworkManager cannot
    # rewrite it on a read-only root, but keeps its own in /run.
    ln -sfn /run/NetworkManager/resolv.conf "$ROOT/etc/resolv.conf"
fi
for fs in sys proc dev/pts dev; do umount "$ROOT/$fs"; done
cp -n "$ROOT"/tmp/peercam/built/*.whl "$CACHE/wheels/" 2>/dev/null || true
rm -rf "$ROOT/tmp/peercam"
"$PYTHON" "$HERE/compile_bytecode.py" "$ROOT" /opt/peercam

say "partitions as files: FAT boot (${BOOT_MB} MiB), ext4 root"
cp "$HERE/boot/peercam.txt" "$ROOT/boot/firmware/peercam.txt"
fat_partition "$WORK/boot.img" "$BOOT_MB" "$ROOT/boot/firmware" "$BOOT_LABEL" "$DISK_ID"
find "$ROOT/boot/firmware" -mindepth 1 -delete  # the mount point stays, empty

say "data partition: everything that changes, moved off the read-only root"
# Each directory the camera writes is a mount point on the root (left empty) and a
# directory of the data partition bound onto it (customize.sh's fstab names each
# pair); ownership and modes go with it (mkfs.ext4 -d keeps them).
DATA=$WORK/data
mkdir -p "$DATA"
peercam_ids=$(awk -F: '$1 == "peercam" { print $3 ":" $4 }' "$ROOT/etc/passwd")
journal_gid=$(awk -F: '$1 == "systemd-journal" { print $3 }' "$ROOT/etc/group")
mkdir -p "$ROOT/var/lib/peercam" && chown "$peercam_ids" "$ROOT/var/lib/peercam" && chmod 700 "$ROOT/var/lib/peercam"
chmod 700 "$ROOT/var/lib/ssh-host-keys"
chown "0:$journal_gid" "$ROOT/var/log/journal" && chmod 2755 "$ROOT/var/log/journal"
awk '$1 ~ "^/data/" && $3 == "none" && $4 == "bind" { print $1, $2 }' "$ROOT/etc/fstab" |
while read -r source target; do
    from=$ROOT$target to=$DATA/${source#/data/}
    mkdir -p "$from" "$to"
    cp -a "$from/." "$to/"
    chown --reference="$from" "$to" && chmod --reference="$from" "$to"
    find "$from" -mindepth 1 -delete
done
# The data partition takes the rest of the card at first boot.
root_partition "$WORK/root.img" peercam-root "$ROOT"
mkfs.ext4 -q -L peercam-data -d "$DATA" "$WORK/data.img" 256M

say "image: MBR with three partitions (data grows to the card's size at first boot)"
if [ -n "$BASE_IMAGE" ]; then
    IMAGE=$OUT/peercam-$VERSION-from-$stem.img
else
    IMAGE=$OUT/peercam-$VERSION-$BASE-arm64.img
fi
assemble "$IMAGE" "$DISK_ID" "$WORK/boot.img" "$WORK/root.img" "$WORK/data.img"

if [ $COMPRESS = yes ]; then
    say "compressing"
    xz -T0 -6 -f -k "$IMAGE"
    (cd "$OUT" && sha256sum "$(basename "$IMAGE").xz" > "$(basename "$IMAGE").xz.sha256")
fi
(cd "$OUT" && sha256sum "$(basename "$IMAGE")" > "$(basename "$IMAGE").sha256")
say "done in $(( $(date +%s) - started )) s: $IMAGE$([ $COMPRESS = yes ] && echo .xz)"
