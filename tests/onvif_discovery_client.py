"""Run in the client's network namespace by tests/test_onvif.py: Home Assistant's
ONVIF discovery and setup, end to end. Finds the camera with WSDiscovery as HA's
config flow does (homeassistant/components/onvif/config_flow.py: a search by the
Profile/Streaming scope; the name and MAC from the scopes, host and port from the
first XAddr), then sets it up with onvif-zeep-async from that address and prints one
JSON line: what was found and what the setup learnt.

    python -m tests.onvif_discovery_client USER PASSWORD
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import urlsplit

from onvif import ONVIFCamera
from wsdiscovery.discovery import ThreadedWSDiscovery
from wsdiscovery.scope import Scope

from tests.onvif_client import set_up_as_home_assistant

PREFIX = "onvif://www.onvif.org/"


def discover() -> list[dict[str, object]]:
    discovery = ThreadedWSDiscovery(ttl=4)
    discovery.start()
    try:
        services = discovery.searchServices(scopes=[Scope(PREFIX + "Profile/Streaming")])
        found = []
        for service in services:
            scopes = [s.getValue() for s in service.getScopes()]

            def scope(kind: str, values: list[str] = scopes) -> str | None:
                hits = [v for v in values if v.lower().startswith(PREFIX + kind)]
                return hits[0].rsplit("/", 1)[1] if hits else None

            address = urlsplit(service.getXAddrs()[0])
            found.append(
                {"epr": service.getEPR(), "host": address.hostname, "port": address.port or 80,
                 "name": scope("name"), "mac": scope("mac"), "hardware": scope("hardware")}
            )  # fmt: skip
        return found
    finally:
        discovery.stop()


async def main(user: str, password: str) -> None:
    found = discover()
    result: dict[str, object] = {"discovered": found}
    if found:
        camera = ONVIFCamera(str(found[0]["host"]), int(str(found[0]["port"])), user, password)
        try:
            setup = await set_up_as_home_assistant(camera)
        finally:
            await camera.close()
        result["setup"] = {
            "mac": setup.mac, "serial": setup.serial, "stream_uri": setup.stream_uri,
            "snapshot": len(setup.snapshot or b""), "profiles": setup.profiles,
        }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
