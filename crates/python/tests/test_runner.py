"""The Agents SDK's Runner with a scripted model and a function tool, its history in persist: the
run's items stored exactly as the SDK's own SQLiteSession stores them, and a restarted process
continuing the conversation with the earlier items in its model's input."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from agents import SQLiteSession
from scripted import run

from persist.agents import PersistSession

# Every test here is a coroutine run by pytest-asyncio, whatever `asyncio_mode` is.
pytestmark = pytest.mark.asyncio

SCRIPT = str(pathlib.Path(__file__).with_name("scripted.py"))

FIRST = "What is the weather?"
SECOND = "And tomorrow?"


async def test_a_run_is_stored_and_a_restarted_process_continues_it(shared_url, tmp_path):
    session = PersistSession("weather-1", shared_url)
    reply, model = await run(session, FIRST)
    assert reply == "Sunny in Paris (you asked 1 times)"
    items = await session.get_items()
    assert items == [
        {"role": "user", "content": FIRST},
        {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny in Paris"},
        {
            "id": "msg_2",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "Sunny in Paris (you asked 1 times)", "annotations": []}
            ],
        },
    ]
    # The SDK's own session, given the same two runs, the reference for both processes.
    reference_items, reference_inputs = await _reference(tmp_path)
    assert items == reference_items[:4]
    # The model was given the user's message, then that and the tool's call and answer.
    assert model.inputs == [items[:1], items[:3]]

    # Another process (a restart) continues the conversation from the store.
    restarted = subprocess.run(
        [sys.executable, SCRIPT, shared_url, "weather-1", SECOND, "r"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, OPENAI_API_KEY="test"),
    )
    assert restarted.returncode == 0, restarted.stderr
    answer = json.loads(restarted.stdout)
    assert answer["reply"] == "Sunny in Paris (you asked 2 times)"
    # Its model's first input: the four items of the first run, then the new question.
    assert answer["inputs"][0] == items + [{"role": "user", "content": SECOND}]
    after = await session.get_items()
    assert len(after) == 8
    assert after[:4] == items
    assert after[4] == {"role": "user", "content": SECOND}
    assert [item.get("type") for item in after[5:]] == ["function_call", "function_call_output", "message"]
    assert after[7]["content"][0]["text"] == "Sunny in Paris (you asked 2 times)"
    assert after == reference_items
    assert answer["inputs"] == reference_inputs


async def _reference(tmp_path) -> tuple[list[dict], list[list[dict]]]:
    """The same two runs through the SDK's SQLiteSession: the items it stores at the end, and
    the inputs the second run's model was given."""
    reference = SQLiteSession("weather-1", str(tmp_path / "reference.db"))
    try:
        await run(reference, FIRST)
        _, model = await run(reference, SECOND, "r")
        return await reference.get_items(), model.inputs
    finally:
        reference.close()
