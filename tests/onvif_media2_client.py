"""A Profile T client's first calls, made with onvif-python (a zeep client built on
ONVIF's own WSDLs, Media2's among them) against the camera: finds the services, reads
the Media2 profiles with all their configurations, the stream and snapshot URIs and
the encoder configurations, and asks for a synchronization point.

onvif-python installs a package named `onvif`, as onvif-zeep-async (the Home Assistant
client the other tests use) does, so it lives in a folder of its own
(`.venv/onvif-python`, see the Makefile) and runs here, in a process of its own, with
that folder first on its path. Prints what it read as JSON."""

from __future__ import annotations

import json
import sys
from typing import Any


def main(host: str, port: int, user: str, password: str) -> None:
    from onvif import CacheMode, ONVIFClient  # onvif-python's, from the path given
    from zeep.helpers import serialize_object

    client = ONVIFClient(host, port, user, password, cache=CacheMode.NONE, timeout=20)
    media2 = client.media2()  # its address from GetServices

    def plain(value: Any) -> Any:
        """As JSON, without the empty slots zeep adds for the schema's xs:any."""

        def bare(node: Any) -> Any:
            if isinstance(node, dict):
                return {
                    k: bare(v) for k, v in node.items() if not k.startswith(("_value_", "_attr_"))
                }
            if isinstance(node, list):
                return [bare(v) for v in node]
            return node

        plain_object = serialize_object(value)  # type: ignore[no-untyped-call]
        return bare(json.loads(json.dumps(plain_object, default=str)))

    profiles = plain(media2.GetProfiles(Type=["All"]))
    bare = plain(media2.GetProfiles())
    found: dict[str, Any] = {
        "profiles": profiles,
        "bare_profiles": bare,
        "capabilities": plain(media2.GetServiceCapabilities()),
        "encoders": plain(media2.GetVideoEncoderConfigurations()),
        "options": plain(media2.GetVideoEncoderConfigurationOptions(ProfileToken="main")),
        "uris": {
            p["token"]: {
                protocol: media2.GetStreamUri(Protocol=protocol, ProfileToken=p["token"])
                for protocol in ("RtspUnicast", "RTSP")
            }
            for p in profiles
        },
        "snapshot": media2.GetSnapshotUri(ProfileToken="main"),
    }
    media2.SetSynchronizationPoint(ProfileToken="main")
    try:
        media2.GetStreamUri(Protocol="RtspMulticast", ProfileToken="main")
        found["multicast"] = "answered"
    except Exception as error:  # zeep's Fault, whose text the test reads
        found["multicast"] = str(error)
    print(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
