"""The dashboard: eight Dash views (``dashboard.views``) and their JSON API (``dashboard.api``),
mounted in the ingress at ``/dashboard/``, over the fleet status and the trace store."""
