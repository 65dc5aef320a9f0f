"""The app's webhook as the sandbox keeps it: where deliveries go, and every delivery it made."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HookDelivery:
    """One attempt to deliver an event to the app's webhook URL, as GitHub records it."""

    id: int
    guid: str  # X-GitHub-Delivery, shared by a delivery and all its redeliveries
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    body: bytes
    delivered_at: float
    duration: float = 0.0
    status_code: int = 0  # 0: no HTTP answer (refused, timed out)
    status: str = "pending"
    redelivery: bool = False
    response_body: str = ""


@dataclass
class HookLog:
    """The app's webhook configuration and its delivery history (newest last)."""

    url: str | None = None
    secret: str | None = None
    content_type: str = "json"
    insecure_ssl: str = "0"
    deliveries: list[HookDelivery] = field(default_factory=list)

    def find(self, delivery_id: int) -> HookDelivery | None:
        """Return the delivery with this id."""
        return next((d for d in self.deliveries if d.id == delivery_id), None)
