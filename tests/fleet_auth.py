"""The shared test fleet's admin token (``FLEET_ADMIN_TOKEN``): every mutation (pull,
delete, settings, benchmarks, unloads) sends it; tests of the refusal leave it out."""

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def login(page: object, endpoint: str) -> None:
    """Log a headless browser page in to the dashboard with the admin token, as a user
    does: the login form, then the session cookie."""
    page.goto(f"{endpoint}/dashboard/login")  # type: ignore[attr-defined]
    page.fill("input[name=token]", ADMIN_TOKEN)  # type: ignore[attr-defined]
    with page.expect_navigation():  # type: ignore[attr-defined]
        page.click("input[type=submit]")  # type: ignore[attr-defined]
