"""Who may call what: credentials (admin token, inference keys), browser safety (Origin
and Host allow-lists) and which routes need which credential. Pure Python over
:class:`~herd.settings.Settings`; the ingress applies it in ``serve_app/guard.py``."""
