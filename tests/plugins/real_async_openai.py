"""An async hook that asks a chat model through ``openai.AsyncOpenAI``, as agent plugins
do; the model is an httpx MockTransport here (it answers with the prompt in capitals and
counts words as tokens). ``ask("some prompt")`` returns the reply and its usage."""

import asyncio
import json

import httpx
from openai import AsyncOpenAI


def _model(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    prompt = body["messages"][-1]["content"]
    words = len(prompt.split())
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": prompt.upper()},
                }
            ],
            "usage": {
                "prompt_tokens": words,
                "completion_tokens": words,
                "total_tokens": 2 * words,
            },
        },
    )


class OpenAIPlugin:
    name = "real-openai"
    version = "1.0"

    def initialize(self, config):
        self.client = AsyncOpenAI(
            api_key="sk-test",
            base_url="http://model.test/v1",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(_model)),
        )

    async def ask(self, request):
        async with asyncio.timeout(30):  # the plugin's own budget for the model's answer
            completion = await self.client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": request}]
            )
        return {
            "reply": completion.choices[0].message.content,
            "model": completion.model,
            "tokens": completion.usage.total_tokens,
        }
