"""An async hook that fetches JSON with ``httpx.AsyncClient``: ``ask({"url": ...})``
returns the decoded body and the status (it needs ``Sandbox(network=True)``)."""

import httpx


class HttpxPlugin:
    name = "real-httpx"
    version = "1.0"

    async def ask(self, request):
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(request["url"], params=request.get("params"))
            response.raise_for_status()
            return {"status": response.status_code, "body": response.json()}
