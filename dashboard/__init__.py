"""The Dash dashboard (issue: traces and analytics); not built yet."""
