"""Inserts load jobs with River's Python client, for Millrace to work (tests/proof.rs).

    python3 insert_jobs.py DATABASE_URL SCHEMA COUNT

River's Python client (PyPI `riverqueue`, with its SQLAlchemy driver on psycopg 3) has no
schema option: its statements name `river_job` unqualified. It is pointed at the test's schema
through the connection's search_path (`options=-c search_path=SCHEMA`).

Inserts COUNT jobs of kind `millrace_load` with args {"n": i}, by each insert path the
client has: one by `insert` with default options, one by `insert` with options, one by
`insert_tx` inside a transaction, one scheduled a second in the past (state `scheduled`, for
Millrace's scheduler to make available), and the rest by `insert_many`. Prints one JSON line:
{"inserted": COUNT}.

Not its unique insert: the client's 0.7.0 release upserts on `(kind, unique_key)`, the index
of River's schema version 5, which River's migration 6 replaced, so it fails on a database
migrated by River itself just as on Millrace's.
"""

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import riverqueue
import sqlalchemy
from riverqueue.driver import riversqlalchemy

KIND = "millrace_load"


@dataclass
class LoadArgs:
    n: int

    kind: str = KIND

    def to_json(self) -> str:
        return json.dumps({"n": self.n})


def sqlalchemy_url(url: str) -> str:
    """postgres://... as SQLAlchemy's psycopg 3 dialect names it."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    raise SystemExit(f"not a PostgreSQL URL: {url}")


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit("usage: insert_jobs.py DATABASE_URL SCHEMA COUNT")
    url, schema, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if count < 5:
        raise SystemExit("COUNT must be at least 5: one job per insert path, then insert_many")

    engine = sqlalchemy.create_engine(
        sqlalchemy_url(url),
        connect_args={"options": f"-c search_path={schema}"},
    )
    client = riverqueue.Client(riversqlalchemy.Driver(engine))

    client.insert(LoadArgs(n=0))
    client.insert(
        LoadArgs(n=1),
        insert_opts=riverqueue.InsertOpts(max_attempts=5, priority=2, tags=["from_python"]),
    )
    with engine.begin() as conn:
        client.insert_tx(conn, LoadArgs(n=2))
    client.insert(
        LoadArgs(n=3),
        insert_opts=riverqueue.InsertOpts(
            scheduled_at=datetime.now(timezone.utc) - timedelta(seconds=1)
        ),
    )
    inserted = 4 + client.insert_many([LoadArgs(n=n) for n in range(4, count)])

    engine.dispose()
    print(json.dumps({"inserted": inserted}))


if __name__ == "__main__":
    main()
