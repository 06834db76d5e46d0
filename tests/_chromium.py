"""Headless Debian Chromium for the real-browser tests: one page that may reach only this machine."""
import os
from contextlib import contextmanager
from urllib.parse import urlparse

CHROMIUM = os.environ.get("ROADGIE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@contextmanager
def local_page(profile_dir, width:int, height:int):
    "Yield (page, page errors): a Chromium page whose requests outside 127.0.0.1/localhost are aborted."
    from playwright.sync_api import sync_playwright
    errors = []
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile_dir), executable_path=CHROMIUM, headless=True,
                                                   args=ARGS, viewport={"width": width, "height": height})
        try:
            ctx.route("**/*", lambda route: route.continue_() if urlparse(route.request.url).hostname in
                      ("127.0.0.1", "localhost") else route.abort())
            page = ctx.new_page()
            page.set_default_timeout(60_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            ctx.close()
