"""A scripted model for the Agents SDK (its `Model` interface, no network): a user message asking
for the weather gets a call of the `get_weather` tool, then, once the tool answered, a reply
that quotes the tool's output and counts the user messages it was given (so a test sees the
history the session gave the model)."""

from __future__ import annotations

import json
import sys

from agents import Agent, ModelResponse, Runner, Usage, function_tool, set_tracing_disabled
from agents.models.interface import Model
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

set_tracing_disabled(True)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


class ScriptedModel(Model):
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix  # a run of its own gives its items ids of their own
        self.inputs: list[list[dict]] = []

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs, tracing, *, previous_response_id=None, conversation_id=None, prompt=None):  # noqa: A002, E501 (the SDK's signature)
        items = [input] if isinstance(input, str) else list(input)
        self.inputs.append(items)
        last = items[-1]
        users = sum(1 for item in items if isinstance(item, dict) and item.get("role") == "user")
        if isinstance(last, dict) and last.get("type") == "function_call_output":
            text = f"{last['output']} (you asked {users} times)"
            output = [
                ResponseOutputMessage(
                    id=f"msg_{self.prefix}{len(self.inputs)}",
                    type="message",
                    role="assistant",
                    status="completed",
                    content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
                )
            ]
        else:
            output = [
                ResponseFunctionToolCall(
                    id=f"fc_{self.prefix}{len(self.inputs)}",
                    type="function_call",
                    call_id=f"call_{self.prefix}{len(self.inputs)}",
                    name="get_weather",
                    arguments=json.dumps({"city": "Paris"}),
                    status="completed",
                )
            ]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError("the tests run without streaming")


def agent(model: ScriptedModel) -> Agent:
    return Agent(name="Weather", instructions="Answer with the tool.", model=model, tools=[get_weather])


async def run(session, text: str, prefix: str = "") -> tuple[str, ScriptedModel]:
    model = ScriptedModel(prefix)
    result = await Runner.run(agent(model), text, session=session)
    return result.final_output, model


if __name__ == "__main__":
    # A process of its own (a restart): `python scripted.py URL SESSION TEXT PREFIX` prints, as JSON,
    # the reply and the inputs the model was given.
    import asyncio
    import os

    from persist.agents import PersistSession

    os.environ["OPENAI_API_KEY"] = "test"
    reply, model = asyncio.run(run(PersistSession(sys.argv[2], sys.argv[1]), sys.argv[3], sys.argv[4]))
    print(json.dumps({"reply": reply, "inputs": model.inputs}))
