#!/bin/sh
# Runs inside the arm64 root (chroot, under qemu-user) that mmdebstrap made or that
# came out of a Raspberry Pi OS Lite image (BASE=image): the service user, peercam's
# Python environment, units, fstab, and the first-boot state.
set -eu
W=/tmp/peercam
export DEBIAN_FRONTEND=noninteractive
# mmdebstrap leaves no package lists behind, nor does a downloaded image.
apt_ready=no
apt_install() {
    [ $apt_ready = yes ] || { apt-get update -q >/dev/null; apt_ready=yes; }
    apt-get install -y -q --no-install-recommends "$@" >/dev/null
}
has_unit() { [ -e "/lib/systemd/system/$1" ] || [ -e "/etc/systemd/system/$1" ]; }

echo peercam > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpeercam\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
# Storage (image-build/README.md, "Storage"): the root and the boot partition are
# read-only (a FAT written when the plug is pulled is left dirty, or worse); what changes
# lives on the data partition, bound into place; what need not survive is in RAM.
cat > /etc/fstab <<FSTAB
PARTUUID=$DISK_ID-02  /              ext4   ro,noatime                             0  1
PARTUUID=$DISK_ID-01  /boot/firmware vfat   ro,umask=0077                          0  2
PARTUUID=$DISK_ID-03  /data          ext4   noatime,x-systemd.growfs               0  2
/data/peercam         /var/lib/peercam          none  bind  0  0
/data/etc-peercam     /etc/peercam              none  bind  0  0
/data/releases        /var/lib/peercam-releases none  bind  0  0
/data/systemd         /var/lib/systemd          none  bind  0  0
/data/ssh-host-keys   /var/lib/ssh-host-keys    none  bind  0  0
tmpfs                 /tmp           tmpfs  nosuid,nodev,size=64M,mode=1777        0  0
tmpfs                 /var/tmp       tmpfs  nosuid,nodev,size=16M,mode=1777        0  0
tmpfs                 /var/log       tmpfs  nosuid,nodev,noexec,size=16M,mode=0755 0  0
/data/journal         /var/log/journal          none  bind  0  0
FSTAB
# Raspberry Pi OS runs NetworkManager, which keeps its leases and state there.
if has_unit NetworkManager.service; then
    echo "/data/NetworkManager  /var/lib/NetworkManager   none  bind  0  0" >> /etc/fstab
fi
mkdir -p /data /var/lib/peercam /var/lib/peercam-releases /var/lib/ssh-host-keys /var/log/journal

# Wheels with no aarch64 build on PyPI (pyalsaaudio) are built here, once, with the
# target's own compiler; build.sh keeps them in its cache for the next build.
mkdir -p $W/built
if ls $W/wheels/*.tar.gz >/dev/null 2>&1; then
    build_debs="gcc libc6-dev python3-dev libasound2-dev python3-setuptools python3-wheel"
    # Only what was added goes again (Raspberry Pi OS Lite ships gcc already).
    added=$(for deb in $build_debs; do
        dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "ok installed" || echo "$deb"
    done)
    apt_install $build_debs
    for sdist in $W/wheels/*.tar.gz; do
        # pip runs from its wheel (a zip Python can execute); the shell cannot glob inside it.
        python3 "$(ls $W/wheels/pip-*.whl | head -1)/pip" wheel -q --no-deps --no-build-isolation --no-index \
            -w $W/built "$sdist"
        rm "$sdist"
    done
    if [ -n "$added" ]; then apt-get purge -y -q --autoremove $added >/dev/null; fi
    cp $W/built/*.whl $W/wheels/
fi

# The same installer a Raspberry Pi OS user runs, offline from the wheels, trusting
# updates signed with the build's key.
sh $W/scripts/install.sh --wheels $W/wheels --no-start --update-key $W/update-key.pem

if [ "$BASE" = image ]; then
    # Raspberry Pi OS's own first boot grows the root over the whole card (our data
    # partition follows it), asks on the console for a user, makes a swap file and
    # SSH host keys on the root: peercam's first boot does what is needed of that,
    # on the data partition. Each is left out only where the image has it.
    # Imager's first-run hooks (systemd.run*, systemd.unit=kernel-command-line.target)
    # go too: left half, the card would never reach multi-user.
    sed -i -e 's# init=/usr/lib/raspberrypi-sys-mods/firstboot##' \
        -e 's# systemd\.\(run\|run_success_action\|run_failure_action\|unit\)=[^ ]*##g' \
        /boot/firmware/cmdline.txt
    if grep -Eq 'firstboot|(^| )resize( |$)' /boot/firmware/cmdline.txt; then
        echo "customize: cmdline.txt still asks for Raspberry Pi OS's first boot:" \
            "$(cat /boot/firmware/cmdline.txt)" >&2
        exit 1
    fi
    # fake-hwclock would save the time on the read-only root (timesyncd keeps it on
    # /data); resize2fs_once is an init script, not a unit file.
    for unit in userconfig.service dphys-swapfile.service regenerate_ssh_host_keys.service \
            sshswitch.service rpi-resize.service rpi-resize-swap-file.service \
            fake-hwclock.service resize2fs_once.service; do
        if has_unit $unit || [ -e "/etc/init.d/${unit%.service}" ]; then
            systemctl mask $unit; echo "customize: masked $unit"
        fi
    done
    # pi-gen leaves Wi-Fi off (NetworkManager's WirelessEnabled=false, the radio
    # rfkill-blocked) until a country is set; peercam.txt's wifi_country is that, and
    # first boot writes the connection only when Wi-Fi is asked for.
    state=/var/lib/NetworkManager/NetworkManager.state
    if [ -e $state ]; then sed -i 's/^WirelessEnabled=false/WirelessEnabled=true/' $state; fi
    for blocked in /var/lib/systemd/rfkill/*:wlan; do
        if [ -e "$blocked" ]; then echo 0 > "$blocked"; fi
    done
    command -v growpart >/dev/null || apt_install cloud-guest-utils
fi
# Enabled: the daemon, first boot, growing the data partition, the network (systemd's,
# unless NetworkManager is there: Raspberry Pi OS). SSH stays off unless peercam.txt
# asks for it (first boot enables it then).
if has_unit NetworkManager.service; then
    systemctl enable peercam-growdata.service NetworkManager.service
else
    systemctl enable peercam-growdata.service systemd-networkd.service systemd-resolved.service
fi
for unit in systemd-timesyncd.service avahi-daemon.service; do
    if has_unit $unit; then systemctl enable $unit; fi
done
systemctl disable ssh.service
# Host keys made here would be the same on every camera flashed from this image: each
# camera makes its own, on the data partition (the root is read-only).
rm -f /etc/ssh/ssh_host_*
printf '%s\n' "# peercam: host keys on the data partition (the root is read-only)." \
    "HostKey /var/lib/ssh-host-keys/ssh_host_ed25519_key" \
    "HostKey /var/lib/ssh-host-keys/ssh_host_ecdsa_key" \
    "HostKey /var/lib/ssh-host-keys/ssh_host_rsa_key" > /etc/ssh/sshd_config.d/peercam-host-keys.conf
# Security updates, daily (apt-daily*.timer): the read-only root and boot partition
# (kernel and firmware packages write there) are made writable only while apt runs
# (peercam-root rw), and read-only again after it. Raspberry Pi OS's bootloader
# updater stages its update on the boot partition at start: the same for it.
apt_install unattended-upgrades
if has_unit rpi-eeprom-update.service; then
    # Its unit is a oneshot that remains active after it ran: read-only again right
    # after it (ExecStartPost), not at shutdown; ExecStopPost for when it fails.
    mkdir -p /etc/systemd/system/rpi-eeprom-update.service.d
    printf '%s\n' "[Service]" "ExecStartPre=+/usr/local/sbin/peercam-root rw" \
        "ExecStartPost=+/usr/local/sbin/peercam-root ro" \
        "ExecStopPost=+/usr/local/sbin/peercam-root ro" \
        > /etc/systemd/system/rpi-eeprom-update.service.d/peercam-root.conf
fi
printf '%s\n' 'APT::Periodic::Update-Package-Lists "1";' 'APT::Periodic::Unattended-Upgrade "1";' \
    'Unattended-Upgrade::Automatic-Reboot "true";' 'Unattended-Upgrade::Automatic-Reboot-Time "04:00";' \
    > /etc/apt/apt.conf.d/20peercam-auto-upgrades
# Empty: each camera's systemd makes its own id at its first boot (in memory, the root
# being read-only), and `peercam firstboot` writes it to the card then.
: > /etc/machine-id
# No password login on the console either: the camera is used from the browser.
passwd -l root >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/*.log
# /var/log is RAM from now on (its journal/ a bind of the data partition's).
find /var/log -mindepth 1 -delete
mkdir -p /var/log/journal
