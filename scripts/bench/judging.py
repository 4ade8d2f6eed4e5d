"""Judging: the judge client at concurrency 1 vs 8 against a local OpenAI-compatible server that answers
every request after a fixed latency (a real HTTP server on loopback, like a remote judge API), and a
rerun served from the client's disk cache (requests sent: 0)."""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import Report, Target, alternate, median, spread, write

NAME = "judging"
TITLE = "Judging: concurrency 1 vs 8 against a fixed-latency server, and the cached rerun"


class Server:
    """Chat completions on loopback, each answered after ``latency`` seconds."""

    def __init__(self, latency: float):
        latency_s = latency

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(latency_s)
                out = {
                    "id": "x",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "m"}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
                }
                data = json.dumps(out).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def client(url: str, concurrency: int, cache_dir: Path | None):
    from po_bench.judges.client import JudgeClient

    cfg = {
        "name": "bench",
        "version": "1",
        "model": "bench-judge",
        "base_url": url,
        "max_concurrency": concurrency,
        "timeout": 60,
        "cache": {"enabled": cache_dir is not None, "dir": str(cache_dir) if cache_dir else None},
    }
    return JudgeClient(cfg)


def main(argv=None) -> Report:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    server = Server(a.latency)
    reqs = [{"messages": [{"role": "user", "content": f"judge item {i}"}], "max_tokens": 1} for i in range(a.requests)]

    def case(concurrency):
        def go(r):
            c = client(server.url, concurrency, None)
            t0 = time.perf_counter()
            res = c.chat_many(reqs)
            dt = time.perf_counter() - t0
            assert all(x.ok for x in res) and c.stats.requests == a.requests
            return dt

        return go

    try:
        times = alternate({"concurrency 1": case(1), "concurrency 8": case(8)}, a.repeats)
        with tempfile.TemporaryDirectory() as d:
            first = client(server.url, 8, Path(d))
            first.chat_many(reqs)
            rerun = client(server.url, 8, Path(d))
            t0 = time.perf_counter()
            rerun.chat_many(reqs)
            cached_s = time.perf_counter() - t0
            cached = {"requests": rerun.stats.requests, "cache_hits": rerun.stats.cache_hits}
    finally:
        server.close()
    speedup = median(times["concurrency 1"]) / median(times["concurrency 8"])
    table = [
        {
            "case": name,
            "requests": a.requests,
            "seconds (min / median / max)": spread(v),
            "requests/s (median)": f"{a.requests / median(v):.1f}",
        }
        for name, v in times.items()
    ]
    table.append(
        {
            "case": "cached rerun (concurrency 8)",
            "requests": f"{cached['requests']} sent, {cached['cache_hits']} from cache",
            "seconds (min / median / max)": f"{cached_s:.3f}",
            "requests/s (median)": "",
        }
    )
    return Report(
        NAME,
        TITLE,
        f"python scripts/bench/run.py judging --requests {a.requests} --latency {a.latency} --repeats {a.repeats}",
        table,
        [
            Target("speed-up at concurrency 8 over 1", speedup, ">= 6", speedup >= 6),
            Target("requests sent by a cached rerun", cached["requests"], "= 0", cached["requests"] == 0),
        ],
        [
            f"Server latency {a.latency} s per request (a remote judge API's order); the ideal speed-up is 8 "
            "(concurrency-bound), less the client's own work per request."
        ],
        {"times": times, "cached": cached, "speedup": speedup},
    )


if __name__ == "__main__":
    print(write(main()).read_text())
