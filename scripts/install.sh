#!/bin/sh
# Install peercam as a system service on Raspberry Pi OS (bookworm) or Debian:
#
#   git clone https://…/peercam && sudo peercam/scripts/install.sh
#
# Installs into /opt/peercam (a Python environment that also sees Raspberry Pi OS's
# picamera2), links /usr/bin/peercam, creates the `peercam` user (groups video, audio,
# gpio), puts the systemd units in place and starts the service. Run it again to
# update. The image build (image-build/) uses it too, with --wheels and --no-start.
#
#   --from SOURCE   what pip installs (default: this checkout)
#   --wheels DIR    install offline from DIR's wheels (pip runs from its own wheel there)
#   --no-start      enable the units but start nothing (a root being built, not booted)
#   --update-key F  trust update bundles signed with this Ed25519 public key (PEM;
#                   scripts/make-update-bundle.py keygen makes one)
set -eu
HERE=$(cd "$(dirname "$0")/.." && pwd)
SOURCE=$HERE
WHEELS=""
START=yes
UPDATE_KEY=""
while [ $# -gt 0 ]; do
    case $1 in
        --from) SOURCE=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --no-start) START=no; shift ;;
        --update-key) UPDATE_KEY=$2; shift 2 ;;
        *) echo "usage: $0 [--from SOURCE] [--wheels DIR] [--no-start] [--update-key FILE]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run it with sudo" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

if [ -z "$WHEELS" ]; then
    # pyalsaaudio has no wheel: pip builds it, with these.
    debs="python3-venv python3-dev gcc libasound2-dev"
    # Raspberry Pi OS: the Camera Modules' Python library comes from its archive.
    if apt-cache show python3-picamera2 >/dev/null 2>&1; then debs="$debs python3-picamera2"; fi
    apt-get install -y -q --no-install-recommends $debs >/dev/null
fi
"$(dirname "$0")/require-picamera2.sh"

# Raspberry Pi OS has a gpio group (and its udev rule); Debian does not.
if ! getent group gpio >/dev/null; then
    groupadd --system gpio
    echo 'SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' \
        > /etc/udev/rules.d/60-peercam-gpio.rules
fi
if ! id peercam >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/peercam --no-create-home \
        --shell /usr/sbin/nologin --groups video,audio,gpio peercam
fi

# --system-site-packages: picamera2 and libcamera are Debian packages, not wheels.
if [ -n "$WHEELS" ]; then
    [ -x /opt/peercam/bin/python3 ] || python3 -m venv --without-pip --system-site-packages /opt/peercam
    # pip runs from its wheel; bytecode is compiled by whoever calls with --wheels.
    python3 "$(ls "$WHEELS"/pip-*.whl | head -1)/pip" --python /opt/peercam/bin/python3 \
        install -q --no-index --no-compile --find-links "$WHEELS" --upgrade peercam
else
    [ -x /opt/peercam/bin/pip ] || python3 -m venv --system-site-packages /opt/peercam
    /opt/peercam/bin/pip install -q --upgrade "$SOURCE"
fi
# Signed updates (peercam update) install beside /opt/peercam and switch `current`;
# this install is the running release from now on.
mkdir -p /var/lib/peercam-releases
ln -sfn /opt/peercam /var/lib/peercam-releases/current
rm -f /var/lib/peercam-releases/previous
ln -sf /var/lib/peercam-releases/current/bin/peercam /usr/bin/peercam
if [ -n "$UPDATE_KEY" ]; then
    install -D -m 644 "$UPDATE_KEY" /usr/share/peercam/update-keys/peercam-update.pem
fi

install -m 644 "$HERE/systemd/peercam.service" "$HERE/systemd/peercam-firstboot.service" \
    "$HERE/systemd/peercam-update.path" "$HERE/systemd/peercam-update.service" \
    "$HERE/systemd/peercam-update-recover.service" "$HERE/systemd/peercam-update-trial.service" \
    /etc/systemd/system/
mkdir -p /etc/peercam
if [ ! -e /etc/peercam/peercam.toml ]; then
    printf '%s\n' "# peercam settings (see the README). peercam.txt on the boot partition" \
        "# may set them too: \`section.key = value\` lines, applied at the next start." \
        > /etc/peercam/peercam.toml
fi
systemctl enable -q peercam.service peercam-firstboot.service peercam-update.path \
    peercam-update-recover.service
[ $START = yes ] || exit 0

systemctl daemon-reload
systemctl restart peercam.service
if ! grep -qs '"admin"' /var/lib/peercam/credentials.json; then
    echo "peercam is running. Set the admin password now: sudo peercam passwd --state-dir /var/lib/peercam"
fi
echo "Open https://$(hostname).local:8443 in a browser."
