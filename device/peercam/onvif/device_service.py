"""ONVIF Device management (ver10): who the camera is, its clock, its services and
their capabilities, its network interfaces and scopes. Read-only: the settings are
peercam.toml's."""

from __future__ import annotations

import asyncio
import datetime
import socket
import time
from collections.abc import Callable, Sequence

from peercam.onvif.device_identity import MANUFACTURER, DeviceIdentity, NetworkInterface
from peercam.onvif.soap import TDS, TEV, TR2, TRT, SoapRequest, action_not_supported, element, text

ONVIF_VERSION = (2, 60)  # the Core spec release these answers follow (June 2016 and on)
# What a client may ask before logging in (ONVIF Core §5.9.4.3, PRE_AUTH): what it
# needs to find the services and adjust its clock for the login's timestamp.
WITHOUT_LOGIN = frozenset(
    {
        "GetSystemDateAndTime", "GetServices", "GetServiceCapabilities", "GetCapabilities",
        "GetWsdlUrl", "GetHostname", "GetEndpointReference",
    }
)  # fmt: skip


class DeviceService:
    def __init__(
        self,
        identity: DeviceIdentity,
        scopes: Sequence[str],
        interfaces: Callable[[], list[NetworkInterface]],
        ports: Callable[[], dict[str, int]],
        discoverable: bool,
    ) -> None:
        """`ports`: what listens where now, by ONVIF's protocol names (HTTP, RTSP)."""
        self._identity = identity
        self._scopes = scopes
        self._interfaces = interfaces
        self._ports = ports
        self._discoverable = discoverable

    async def answer(self, request: SoapRequest, base_url: str) -> str:
        """`base_url`: http://host:port as this client reached us."""
        operation = request.operation
        if operation == "GetSystemDateAndTime":
            return element(
                "tds:GetSystemDateAndTimeResponse", _date_and_time(self._identity.time_zone)
            )
        if operation == "GetDeviceInformation":
            identity = self._identity
            return element(
                "tds:GetDeviceInformationResponse",
                text("tds:Manufacturer", MANUFACTURER),
                text("tds:Model", identity.model),
                text("tds:FirmwareVersion", identity.firmware),
                text("tds:SerialNumber", identity.serial),
                text("tds:HardwareId", identity.model),
            )
        if operation == "GetServices":
            services = (
                (TDS, "device_service"), (TRT, "media_service"), (TR2, "media2_service"),
                (TEV, "events_service"),
            )  # fmt: skip
            return element(
                "tds:GetServicesResponse",
                *(
                    element(
                        "tds:Service",
                        text("tds:Namespace", namespace),
                        text("tds:XAddr", f"{base_url}/onvif/{path}"),
                        _version("tds:Version"),
                    )
                    for namespace, path in services
                ),
            )
        if operation == "GetServiceCapabilities":
            return element(
                "tds:GetServiceCapabilitiesResponse",
                element(
                    "tds:Capabilities",
                    element("tds:Network", ZeroConfiguration=False, IPVersion6=False),
                    element("tds:Security", UsernameToken=True, HttpDigest=False),
                    element("tds:System", DiscoveryResolve=True, DiscoveryBye=True),
                ),
            )
        if operation == "GetCapabilities":
            return element("tds:GetCapabilitiesResponse", _capabilities(base_url))
        if operation == "GetNetworkInterfaces":
            interfaces = await asyncio.to_thread(self._interfaces)
            return element(
                "tds:GetNetworkInterfacesResponse", *(_interface(found) for found in interfaces)
            )
        if operation == "GetScopes":
            return element(
                "tds:GetScopesResponse",
                *(
                    element("tds:Scopes", text("tt:ScopeDef", "Fixed"), text("tt:ScopeItem", scope))
                    for scope in self._scopes
                ),
            )
        if operation == "GetHostname":
            return element(
                "tds:GetHostnameResponse",
                element(
                    "tds:HostnameInformation",
                    text("tt:FromDHCP", False),
                    text("tt:Name", socket.gethostname()),
                ),
            )
        if operation == "GetNetworkProtocols":
            return element(
                "tds:GetNetworkProtocolsResponse",
                *(
                    element(
                        "tds:NetworkProtocols",
                        text("tt:Name", name),
                        text("tt:Enabled", bool(port)),
                        text("tt:Port", port),
                    )
                    for name, port in self._ports().items()
                ),
            )
        if operation == "GetDiscoveryMode":
            mode = "Discoverable" if self._discoverable else "NonDiscoverable"
            return element("tds:GetDiscoveryModeResponse", text("tds:DiscoveryMode", mode))
        # What the system was given by DHCP or by hand is the OS's to say; ONVIF
        # clients only check that these answer.
        if operation == "GetNTP":
            return element(
                "tds:GetNTPResponse", element("tds:NTPInformation", text("tt:FromDHCP", True))
            )
        if operation == "GetDNS":
            return element(
                "tds:GetDNSResponse", element("tds:DNSInformation", text("tt:FromDHCP", True))
            )
        if operation == "GetWsdlUrl":
            return element(
                "tds:GetWsdlUrlResponse", text("tds:WsdlUrl", "https://www.onvif.org/profiles/")
            )
        if operation == "GetEndpointReference":
            return element(
                "tds:GetEndpointReferenceResponse",
                text("tds:GUID", self._identity.endpoint_reference),
            )
        raise action_not_supported(operation)


def _version(name: str) -> str:
    return element(name, text("tt:Major", ONVIF_VERSION[0]), text("tt:Minor", ONVIF_VERSION[1]))


def _date_and_time(zone: str) -> str:
    now = datetime.datetime.now(datetime.UTC)
    local = now.astimezone()

    def stamp(name: str, moment: datetime.datetime) -> str:
        return element(
            name,
            element(
                "tt:Time",
                text("tt:Hour", moment.hour),
                text("tt:Minute", moment.minute),
                text("tt:Second", moment.second),
            ),
            element(
                "tt:Date",
                text("tt:Year", moment.year),
                text("tt:Month", moment.month),
                text("tt:Day", moment.day),
            ),
        )

    # The clock is the system's, set by NTP (systemd-timesyncd on the image): a
    # client seeing "NTP" leaves it alone rather than setting it by hand.
    return element(
        "tds:SystemDateAndTime",
        text("tt:DateTimeType", "NTP"),
        text("tt:DaylightSavings", bool(time.localtime().tm_isdst)),
        element("tt:TimeZone", text("tt:TZ", zone)),
        stamp("tt:UTCDateTime", now),
        stamp("tt:LocalDateTime", local),
    )


def _capabilities(base_url: str) -> str:
    return element(
        "tds:Capabilities",
        element(
            "tt:Device",
            text("tt:XAddr", f"{base_url}/onvif/device_service"),
            element(
                "tt:System",
                text("tt:DiscoveryResolve", True),
                text("tt:DiscoveryBye", True),
                text("tt:RemoteDiscovery", False),
                text("tt:SystemBackup", False),
                text("tt:SystemLogging", False),
                text("tt:FirmwareUpgrade", False),
                _version("tt:SupportedVersions"),
            ),
        ),
        element(
            "tt:Events",
            text("tt:XAddr", f"{base_url}/onvif/events_service"),
            text("tt:WSSubscriptionPolicySupport", False),
            text("tt:WSPullPointSupport", True),
            text("tt:WSPausableSubscriptionManagerInterfaceSupport", False),
        ),
        element(
            "tt:Media",
            text("tt:XAddr", f"{base_url}/onvif/media_service"),
            element(
                "tt:StreamingCapabilities",
                text("tt:RTPMulticast", False),
                text("tt:RTP_TCP", True),
                text("tt:RTP_RTSP_TCP", True),
            ),
        ),
    )


def _interface(found: NetworkInterface) -> str:
    ipv4 = (
        element(
            "tt:IPv4",
            text("tt:Enabled", True),
            element(
                "tt:Config",
                element(
                    "tt:FromDHCP",
                    text("tt:Address", found.ipv4),
                    text("tt:PrefixLength", found.prefix_length),
                ),
                # The image's default; the address reads the same either way.
                text("tt:DHCP", True),
            ),
        )
        if found.ipv4
        else ""
    )
    return element(
        "tds:NetworkInterfaces",
        text("tt:Enabled", found.up),
        element("tt:Info", text("tt:Name", found.name), text("tt:HwAddress", found.mac)),
        ipv4,
        token=found.name,
    )
