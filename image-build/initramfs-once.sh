#!/bin/sh
# The initramfs is the slowest part of the build: under emulation one takes about
# 8 minutes here, and installing the packages made two (the kernel's postinst, then
# a trigger from a package configured after it). This makes exactly one, at the end.
#
#   initramfs-once.sh defer ROOT      before the packages: update-initramfs does nothing
#   initramfs-once.sh generate ROOT   after them: the real one, run once
set -eu
root=$2
case $1 in
    defer)
        chroot "$root" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
        printf '#!/bin/sh\n# peercam image build: deferred, see image-build/initramfs-once.sh\nexit 0\n' \
            > "$root/usr/sbin/update-initramfs"
        chmod 755 "$root/usr/sbin/update-initramfs"
        ;;
    generate)
        rm "$root/usr/sbin/update-initramfs"
        chroot "$root" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
        # -c for every kernel; its post-update hook (raspi-firmware) copies the result,
        # the kernel and the device trees to /boot/firmware.
        started=$(date +%s)
        for modules in "$root"/lib/modules/*; do
            chroot "$root" update-initramfs -c -k "$(basename "$modules")"
        done
        echo "initramfs-once.sh: generated in $(( $(date +%s) - started )) s"
        ;;
    *) echo "usage: $0 defer|generate ROOT" >&2; exit 2 ;;
esac
