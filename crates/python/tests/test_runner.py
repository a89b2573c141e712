"""The Agents SDK's Runner with a scripted model and a function tool, its history in persist: the
run's items stored, and a restarted process continuing the conversation."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from scripted import run

from persist.agents import PersistSession

SCRIPT = str(pathlib.Path(__file__).with_name("scripted.py"))


async def test_a_run_is_stored_and_a_restarted_process_continues_it(shared_url):
    session = PersistSession("weather-1", shared_url)
    reply, model = await run(session, "What is the weather?")
    assert reply == "Sunny in Paris (you asked 1 times)"
    items = await session.get_items()
    kinds = [item.get("type", "message") for item in items]
    assert kinds == ["message", "function_call", "function_call_output", "message"]
    assert items[0] == {"role": "user", "content": "What is the weather?"}
    assert items[1]["name"] == "get_weather" and items[2]["output"] == "Sunny in Paris"
    assert items[3]["role"] == "assistant"
    # The model was given the session's history and the tool's answer, nothing else.
    assert model.inputs[-1] == items[:3]

    # Another process (a restart) continues the conversation from the store.
    restarted = subprocess.run(
        [sys.executable, SCRIPT, shared_url, "weather-1", "And tomorrow?"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip() == "Sunny in Paris (you asked 2 times)"
    items = await session.get_items()
    assert len(items) == 8
    assert [item.get("content") for item in items if item.get("role") == "user"] == [
        "What is the weather?",
        "And tomorrow?",
    ]
