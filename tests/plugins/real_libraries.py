"""pydantic and httpx as plugin authors use them (tests/scenarios/test_real_libraries.py):
a model that validates what a hook is given, and a sync HTTP client calling an API (its
transport a mock: the default sandbox has no network). Plain Python: nothing here
imports plugbox."""

import httpx
from pydantic import BaseModel, Field, ValidationError


class ToolCall(BaseModel):
    tool: str = Field(min_length=1)
    arguments: dict[str, int]
    retries: int = Field(default=0, ge=0, le=3)


def _weather_api(request: httpx.Request) -> httpx.Response:
    city = request.url.params["city"]
    return httpx.Response(200, json={"city": city, "celsius": len(city) * 3})


class ValidatingPlugin:
    name = "real-pydantic"
    version = "1.0"

    def compute(self, what, arg):
        if what == "validate":
            try:
                call = ToolCall.model_validate(arg)
            except ValidationError as exc:
                return {"errors": [".".join(map(str, e["loc"])) for e in exc.errors()]}
            return call.model_dump()
        if what == "schema":
            return sorted(ToolCall.model_json_schema()["properties"])
        raise ValueError(what)


class WeatherPlugin:
    name = "real-httpx"
    version = "1.0"

    def __init__(self):
        self.client = httpx.Client(
            base_url="https://weather.invalid", transport=httpx.MockTransport(_weather_api)
        )

    def compute(self, what, arg):
        response = self.client.get("/now", params={"city": arg})
        response.raise_for_status()
        return response.json()

    def close(self):
        self.client.close()
