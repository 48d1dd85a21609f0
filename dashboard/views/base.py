"""What every dashboard view module exposes: :class:`View` (see ``dashboard.views``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dash import Dash

    from dashboard.bridge import SyncBridge


@dataclass(frozen=True)
class View:
    slug: str
    title: str
    layout: Callable[[Mapping[str, str]], Any]
    register: Callable[[Dash, SyncBridge], None]
    # Outputs ("component-id.property") of the callbacks that change the fleet: the
    # ingress's guard asks for the admin token before it lets one through.
    mutations: tuple[str, ...] = ()
