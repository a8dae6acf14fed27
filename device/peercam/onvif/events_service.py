"""ONVIF Events (ver10) over PullPoint: CreatePullPointSubscription on the events
service; PullMessages, SetSynchronizationPoint, Renew and Unsubscribe on the
subscription's own address (/onvif/subscription/<id>), which is where clients send
both the pull point's and the subscription manager's operations. Push delivery
(Subscribe with a consumer address) is refused: clients then pull, as Home
Assistant does."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable

from peercam.onvif.notifications import MOTION_TOPIC, VISITOR_TOPIC, Notification
from peercam.onvif.pull_points import (
    MAX_PULL_POINTS,
    PullPoints,
    TooManyPullPoints,
    UnknownSubscription,
)
from peercam.onvif.soap import (
    SoapFault,
    SoapRequest,
    action_not_supported,
    bad_argument,
    element,
    text,
    xml_time,
)

DEFAULT_LIFETIME = 600.0  # seconds, when the client names none
TOPIC_DIALECT = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
# xs:duration; years and months (Java clients write P0Y0M0DT0H1M0.000S) taken as 365
# and 30 days, which only matters for lifetimes that are capped anyway.
_DURATION = re.compile(
    r"^P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class EventsService:
    def __init__(self, pull_points: PullPoints, current: Callable[[], list[Notification]]) -> None:
        """`current`: the properties' values now, told to a new or synchronizing
        subscriber."""
        self._points = pull_points
        self._current = current

    async def answer(self, request: SoapRequest, base_url: str) -> str:
        operation = request.operation
        if operation == "GetServiceCapabilities":
            return element(
                "tev:GetServiceCapabilitiesResponse",
                element(
                    "tev:Capabilities",
                    WSSubscriptionPolicySupport=False,
                    WSPullPointSupport=True,
                    WSPausableSubscriptionManagerInterfaceSupport=False,
                    MaxNotificationProducers=0,
                    MaxPullPoints=MAX_PULL_POINTS,
                    PersistentNotificationStorage=False,
                ),
            )
        if operation == "GetEventProperties":
            return _event_properties()
        if operation == "CreatePullPointSubscription":
            lifetime = termination(request.find_text("InitialTerminationTime"))
            try:
                point = self._points.create(lifetime)
            except TooManyPullPoints as error:
                raise SoapFault(400, "Receiver", "ter:MaxPullPointsReached", str(error)) from None
            self._points.synchronize(point.id, self._current())
            now = datetime.datetime.now(datetime.UTC)
            return element(
                "tev:CreatePullPointSubscriptionResponse",
                element(
                    "tev:SubscriptionReference",
                    text("wsa:Address", f"{base_url}/onvif/subscription/{point.id}"),
                ),
                text("wsnt:CurrentTime", xml_time(now)),
                text("wsnt:TerminationTime", _at(point.expires)),
            )
        raise action_not_supported(operation)

    async def answer_subscription(self, request: SoapRequest, point_id: str) -> str:
        try:
            return await self._subscription(request, point_id)
        except UnknownSubscription as error:
            raise SoapFault(400, "Sender", "ter:InvalidArgVal", str(error)) from None

    async def _subscription(self, request: SoapRequest, point_id: str) -> str:
        operation = request.operation
        now = datetime.datetime.now(datetime.UTC)
        if operation == "PullMessages":
            wait = duration(request.find_text("Timeout") or "PT10S")
            limit = _integer(request.find_text("MessageLimit") or "100")
            messages = await self._points.pull(point_id, wait, limit)
            point = self._points.get(point_id)
            return element(
                "tev:PullMessagesResponse",
                text("tev:CurrentTime", xml_time(datetime.datetime.now(datetime.UTC))),
                text("tev:TerminationTime", _at(point.expires)),
                *(_message(m) for m in messages),
            )
        if operation == "Renew":
            point = self._points.renew(point_id, termination(request.find_text("TerminationTime")))
            return element(
                "wsnt:RenewResponse",
                text("wsnt:TerminationTime", _at(point.expires)),
                text("wsnt:CurrentTime", xml_time(now)),
            )
        if operation == "Unsubscribe":
            self._points.remove(point_id)
            return element("wsnt:UnsubscribeResponse")
        if operation == "SetSynchronizationPoint":
            self._points.synchronize(point_id, self._current())
            return element("tev:SetSynchronizationPointResponse")
        raise action_not_supported(operation)


def duration(value: str) -> float:
    """Seconds in an xs:duration of days, hours, minutes and seconds ("PT1M")."""
    match = _DURATION.match(value.strip())
    if not match or value.strip() in ("P", "PT"):
        raise bad_argument(f"not a duration: {value[:40]!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    days = parts.get("y", 0) * 365 + parts.get("mo", 0) * 30 + parts.get("d", 0)
    return days * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)


def termination(value: str | None) -> float:
    """A wsnt:AbsoluteOrRelativeTimeType as seconds from now."""
    if not value:
        return DEFAULT_LIFETIME
    if value.startswith("P"):
        return duration(value)
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_argument(f"not a time or a duration: {value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return (moment - datetime.datetime.now(datetime.UTC)).total_seconds()


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise bad_argument(f"not an integer: {value[:20]!r}") from None


def _at(epoch: float) -> str:
    return xml_time(datetime.datetime.fromtimestamp(epoch, datetime.UTC))


def _items(name: str, items: tuple[tuple[str, str], ...]) -> str:
    return element(name, *(element("tt:SimpleItem", Name=k, Value=v) for k, v in items))


def _message(notification: Notification) -> str:
    return element(
        "wsnt:NotificationMessage",
        text("wsnt:Topic", notification.topic, Dialect=TOPIC_DIALECT),
        element(
            "wsnt:Message",
            element(
                "tt:Message",
                _items("tt:Source", notification.source),
                _items("tt:Data", notification.data),
                UtcTime=xml_time(notification.at),
                PropertyOperation=notification.operation,
            ),
        ),
    )


def _event_properties() -> str:
    def description(source: tuple[str, ...], data: tuple[str, str]) -> str:
        return element(
            "tt:MessageDescription",
            element(
                "tt:Source",
                *(
                    element("tt:SimpleItemDescription", Name=n, Type="tt:ReferenceToken")
                    for n in source
                ),
            ),
            element("tt:Data", element("tt:SimpleItemDescription", Name=data[0], Type=data[1])),
            IsProperty=True,
        )

    def branch(name: str, *content: str, leaf: bool = False) -> str:
        return f'<{name} wstop:topic="{"true" if leaf else "false"}">{"".join(content)}</{name}>'

    # Both topics sit under tns1:RuleEngine (MOTION_TOPIC, VISITOR_TOPIC).
    assert MOTION_TOPIC.startswith("tns1:RuleEngine/") and VISITOR_TOPIC.startswith(
        "tns1:RuleEngine/"
    )
    motion = description(
        ("VideoSourceConfigurationToken", "VideoAnalyticsConfigurationToken", "Rule"),
        ("IsMotion", "xs:boolean"),
    )
    visitor = description(("Source",), ("State", "xs:boolean"))
    topics = branch(
        "tns1:RuleEngine",
        branch("CellMotionDetector", branch("Motion", motion, leaf=True)),
        branch("MyRuleDetector", branch("Visitor", visitor, leaf=True)),
    )
    return element(
        "tev:GetEventPropertiesResponse",
        text("tev:TopicNamespaceLocation", "http://www.onvif.org/onvif/ver10/topics/topicns.xml"),
        text("wsnt:FixedTopicSet", True),
        element("wstop:TopicSet", topics),
        text("wsnt:TopicExpressionDialect", "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"),
        text("wsnt:TopicExpressionDialect", "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"),
        text("tev:MessageContentFilterDialect", "http://www.onvif.org/ver10/tev/messageContentFilter/ItemFilter"),
        text("tev:MessageContentSchemaLocation", "http://www.onvif.org/onvif/ver10/schema/onvif.xsd"),
    )  # fmt: skip
