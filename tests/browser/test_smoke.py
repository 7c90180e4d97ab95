"""The browser harness itself: Chromium loads a page from a real server and runs its script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pubsocket import App
from tests.conftest import make_settings


async def test_chromium_runs_a_page_from_the_server(serve: Any, browser: Any,
                                                    output_dir: Path) -> None:
    app = App(settings=make_settings())

    @app.get("/")
    async def page(request: Any, response: Any) -> Any:
        return response("<!doctype html><title>t</title><p id=x></p>"
                        "<script>document.getElementById('x').textContent = 6 * 7</script>",
                        content_type="text/html")

    running = await serve(app)
    tab = await browser.new_page()
    await tab.goto(running.http + "/")
    assert await tab.text_content("#x") == "42"
    await tab.screenshot(path=str(output_dir / "smoke.png"))
    assert (output_dir / "smoke.png").stat().st_size > 0
