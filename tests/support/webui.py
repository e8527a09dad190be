"""The web UI driven over plain HTTP, as a browser would: cookies kept, each form's CSRF token read."""

from __future__ import annotations

import re

import httpx

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class UI:
    """A client that behaves like a browser: keeps cookies, reads the CSRF token from each page."""

    def __init__(self, base: str, **kwargs: object) -> None:
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=30, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.http.close()

    def csrf(self, path: str) -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text[:500]
        found = _CSRF.search(page.text)
        assert found, f"no CSRF token on {path}"
        return found[1]

    def sign_in(self, email: str = "", password: str = "", token: str = "", next_: str = "/app/") -> httpx.Response:
        data = {"csrf_token": self.csrf("/app/sign-in"), "email": email, "password": password, "token": token}
        return self.http.post(f"/app/sign-in?next={next_}", data=data)

    def post(self, path: str, data: dict[str, str], *, page: str | None = None) -> httpx.Response:
        return self.http.post(path, data={"csrf_token": self.csrf(page or path), **data})
