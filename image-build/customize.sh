#!/bin/sh
# Runs inside the new arm64 root (under qemu-user) at the end of mmdebstrap: the
# service user, peercam's Python environment, units, fstab, and the first-boot state.
set -eu
W=/tmp/peercam
export DEBIAN_FRONTEND=noninteractive

echo peercam > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpeercam\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
cat > /etc/fstab <<FSTAB
PARTUUID=$DISK_ID-02  /              ext4  defaults,noatime,x-systemd.growfs  0  1
PARTUUID=$DISK_ID-01  /boot/firmware vfat  defaults,umask=0077                0  2
FSTAB

# Wheels with no aarch64 build on PyPI (pyalsaaudio) are built here, once, with the
# target's own compiler; build.sh keeps them in its cache for the next build.
mkdir -p $W/built
if ls $W/wheels/*.tar.gz >/dev/null 2>&1; then
    build_debs="gcc libc6-dev python3-dev libasound2-dev python3-setuptools python3-wheel"
    apt-get install -y -q --no-install-recommends $build_debs >/dev/null
    for sdist in $W/wheels/*.tar.gz; do
        # pip runs from its wheel (a zip Python can execute); the shell cannot glob inside it.
        python3 "$(ls $W/wheels/pip-*.whl | head -1)/pip" wheel -q --no-deps --no-build-isolation --no-index \
            -w $W/built "$sdist"
        rm "$sdist"
    done
    apt-get purge -y -q --autoremove $build_debs >/dev/null
    cp $W/built/*.whl $W/wheels/
fi

# The same installer a Raspberry Pi OS user runs, offline from the wheels.
sh $W/scripts/install.sh --wheels $W/wheels --no-start

# Enabled: the daemon, first boot, growing the root, the network. SSH stays off
# unless peercam.txt asks for it (first boot enables it then).
systemctl enable peercam-growroot.service systemd-networkd.service systemd-resolved.service systemd-timesyncd.service avahi-daemon.service
systemctl disable ssh.service
# Host keys made here would be the same on every camera flashed from this image.
rm -f /etc/ssh/ssh_host_*
# No password login on the console either: the camera is used from the browser.
passwd -l root >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/*.log
