"""persist in LangGraph: :class:`PersistSaver` keeps a graph's checkpoints, :class:`PersistStore`
its long-term memory, both in a persist :class:`~persist.Store` (the SQLite file by default,
PostgreSQL, process memory), each in the store's tenant.

>>> store = Store.open("sqlite:graph.db")                                         # doctest: +SKIP
>>> graph = builder.compile(checkpointer=PersistSaver(store), store=PersistStore(store))  # doctest: +SKIP

Needs ``langgraph`` (``pip install "persist-store[langgraph]"``).
"""

from .saver import PersistSaver
from .store import PersistStore

__all__ = ["PersistSaver", "PersistStore"]
