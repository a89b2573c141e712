"""A streaming scripted model for the live-reply tests: the Agents SDK's `ScriptedModel`, each
delta of its stream split in pieces of `chunk` characters (so a part streams in several deltas),
and a turn that can be held after a number of text deltas (so a stop lands mid-text, whatever
the speed of the machine)."""

from __future__ import annotations

import asyncio

from agents import Agent, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
from openai.types.responses import (
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningTextDeltaEvent,
    ResponseTextDeltaEvent,
)
from openai.types.responses.response_reasoning_item import ResponseReasoningItem, Summary

_DELTAS = (
    ResponseTextDeltaEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningTextDeltaEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
)

REASONING_1 = "The user wants the weather; call the tool."
TEXT_1 = "Let me check the weather for you."
REASONING_2 = "Tool said sunny."
TEXT_2 = "It is sunny in Paris, 21C. Enjoy the afternoon by the river."


class ChunkingModel(ScriptedModel):
    """`ScriptedModel`'s stream with deltas of `chunk` characters, `delay` seconds apart; with
    `hold=(turn, n)`, the stream of model call `turn` (from 1) waits after its `n`-th text delta
    until it is cancelled."""

    def __init__(self, steps, *, chunk: int = 4, delay: float = 0.0, hold: tuple[int, int] | None = None) -> None:
        super().__init__(steps)
        self.chunk, self.delay, self.hold = chunk, delay, hold
        self.streams = 0
        self.held = asyncio.Event()

    async def stream_response(self, *args, **kwargs):
        self.streams += 1
        texts = sequence = 0
        async for event in super().stream_response(*args, **kwargs):
            pieces = [event]
            if isinstance(event, _DELTAS) and len(event.delta) > self.chunk:
                delta = event.delta
                pieces = [event.model_copy(update={"delta": delta[i : i + self.chunk]}) for i in range(0, len(delta), self.chunk)]
            for piece in pieces:
                if self.hold is not None and self.hold[0] == self.streams and isinstance(piece, ResponseTextDeltaEvent):
                    if texts == self.hold[1]:
                        self.held.set()
                        await asyncio.sleep(3600)
                    texts += 1
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield piece.model_copy(update={"sequence_number": sequence})
                sequence += 1


tool_calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    tool_calls.append(city)
    return f"{city}: sunny, 21C"


@function_tool
def broken_weather(city: str) -> str:
    """The weather in a city (it fails)."""
    raise RuntimeError(f"no weather for {city}")


def weather_script(tool: str = "get_weather") -> list:
    """Two turns: reasoning, text and a call of `tool`; then reasoning and the answer."""
    return [
        [
            ResponseReasoningItem(id="rs_1", type="reasoning", summary=[Summary(text=REASONING_1, type="summary_text")]),
            assistant_message(TEXT_1, item_id="msg_1"),
            function_call(tool, {"city": "Paris"}, call_id="call_1", item_id="fc_1"),
        ],
        [
            ResponseReasoningItem(id="rs_2", type="reasoning", summary=[Summary(text=REASONING_2, type="summary_text")]),
            assistant_message(TEXT_2, item_id="msg_2"),
        ],
    ]


def weather_agent(model: ScriptedModel) -> Agent:
    return Agent(name="Weather", instructions="Answer with the tool.", model=model, tools=[get_weather, broken_weather])
