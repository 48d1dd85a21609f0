"""The dashboard's views, one module each.

Every module exposes ``VIEW``: its URL slug (under the dashboard prefix), its title in the
navigation, ``layout(query)`` (the page's components; ``query`` holds the URL's query
parameters) and ``register(app, bridge)``, which adds its callbacks to the Dash app.
Callbacks are thin wrappers over module-level functions taking the
:class:`~dashboard.bridge.SyncBridge` first, which the unit tests call directly; figures
come from pure functions of the service's plain data.
"""

from __future__ import annotations

from dashboard.views.base import View

__all__ = ["View", "all_views", "mutating_outputs"]


def all_views() -> tuple[View, ...]:
    """The views in navigation order (Fleet Overview first, at the dashboard's root)."""
    from dashboard.views import (
        apps,
        benchmarks,
        health,
        models,
        overview,
        recommendations,
        settings,
        trace,
        trends,
    )

    return (
        overview.VIEW,
        trends.VIEW,
        models.VIEW,
        apps.VIEW,
        benchmarks.VIEW,
        health.VIEW,
        recommendations.VIEW,
        settings.VIEW,
        trace.VIEW,
    )


def mutating_outputs() -> frozenset[str]:
    """Every view's mutating callback outputs (see :attr:`View.mutations`)."""
    return frozenset(out for view in all_views() for out in view.mutations)
