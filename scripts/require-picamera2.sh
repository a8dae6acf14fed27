#!/bin/sh
# Makes sure Raspberry Pi OS's picamera2, where installed, is 0.3.32 or later: peercam
# asks the camera's encoder for a keyframe whenever a viewer joins, and
# force_key_frame() first came in 0.3.32. With an older one every new viewer would wait
# for the camera's next natural keyframe. Upgrades it once; fails if it stays too old.
set -eu
minimum=0.3.32
installed=$(dpkg-query -W -f='${Version}' python3-picamera2 2>/dev/null || true)
[ -n "$installed" ] || exit 0   # not Raspberry Pi OS, or no camera library: nothing to do
if dpkg --compare-versions "$installed" lt "$minimum"; then
    apt-get install -y -q --only-upgrade python3-picamera2 >/dev/null || true
    installed=$(dpkg-query -W -f='${Version}' python3-picamera2 2>/dev/null || true)
    if dpkg --compare-versions "$installed" lt "$minimum"; then
        echo "peercam needs python3-picamera2 $minimum or later; this system has $installed" \
            "and apt has nothing newer: run 'sudo apt update && sudo apt full-upgrade'" >&2
        exit 1
    fi
fi
