"""What the cache tests share: three questions judged on two metrics, and the number of
verdicts in a cache file, read straight from the SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

QUESTIONS = """
evaluators: [faithfulness, relevancy]
questions:
  - {id: paris, query: "Where is Paris?"}
  - {id: rome, query: "Where is Rome?"}
  - {id: lisbon, query: "Where is Lisbon?"}
"""


def verdict_count(path: Path) -> int:
    """Rows in the verdicts table, read straight from the file (0 when there is none)."""
    if not path.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM verdicts").fetchone()
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0
    return int(count)
