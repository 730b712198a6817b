"""The training benchmarks' own logic (bench/training_data.py, training_scale.py, _relay.py,
_training_host.py): what decides the correctness shares, the byte counts and the on-paper costs.
No servers: the relay is tested against a socket server of the test's own."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from bench import training_scale
from bench._relay import CountingRelay
from bench._training_host import host_share
from bench.report import render
from bench.training_data import coverage, ids_of


def test_coverage_counts_how_many_hosts_hold_each_id() -> None:
    shares = coverage(10, [np.array([0, 1, 2, 3]), np.array([3, 4, 5])])
    assert shares == {0: 0.4, 1: 0.5, 2: 0.1}


def test_coverage_of_disjoint_shares_covering_everything_is_all_exactly_once() -> None:
    assert coverage(6, [np.array([0, 2, 4]), np.array([1, 3, 5])]) == {0: 0.0, 1: 1.0, 2: 0.0}


def test_a_row_a_host_holds_twice_is_not_counted_as_once() -> None:
    shares = coverage(3, [np.array([0, 0, 1]), np.array([2])])
    assert shares[1] == pytest.approx(2 / 3)
    assert shares[2] == pytest.approx(1 / 3)


def test_coverage_refuses_an_id_outside_the_table() -> None:
    with pytest.raises(ValueError, match=r"0\.\.4"):
        coverage(5, [np.array([0, 5])])


def test_rows_are_matched_to_their_ids_by_label() -> None:
    labels = np.array([0.5, -1.25, 3.0, 2.0])
    ids = np.array([10, 11, 12, 13])
    assert ids_of(np.array([3.0, 0.5, 2.0]), labels, ids).tolist() == [12, 10, 13]


def test_a_label_not_in_the_table_is_an_error_not_a_wrong_id() -> None:
    labels, ids = np.array([0.5, 1.5]), np.array([1, 2])
    with pytest.raises(RuntimeError, match="not in the table"):
        ids_of(np.array([0.5, 1.0000001]), labels, ids)


class FakeS3:
    """list_objects_v2 pages over fixed keys, 2 per page (as a paginator would split them)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        keys = self.keys

        class Paginator:
            def paginate(self, Bucket: str, Prefix: str) -> Iterator[dict[str, Any]]:
                found = [k for k in keys if k.startswith(Prefix)]
                for i in range(0, len(found), 2):
                    yield {"Contents": [{"Key": k, "Size": 100 + len(k)} for k in found[i : i + 2]]}

        return Paginator()


def test_sharded_hosts_get_disjoint_shares_of_the_train_files_and_all_of_validation() -> None:
    train = [f"runs/x/train/part-{i:05d}.parquet" for i in range(5)]
    validation = [f"runs/x/validation/part-{i:05d}.parquet" for i in range(2)]
    s3 = FakeS3(train + validation)
    shares = [
        host_share(s3, "b", "runs/x/train/", name="train", distribution="ShardedByS3Key", rank=r, hosts=2)
        for r in range(2)
    ]
    assert set(shares[0]).isdisjoint(shares[1])
    assert sorted(shares[0] + shares[1]) == train
    assert {len(s) for s in shares} == {2, 3}
    for rank in range(2):
        got = host_share(
            s3,
            "b",
            "runs/x/validation/",
            name="validation",
            distribution="FullyReplicated",
            rank=rank,
            hosts=2,
        )
        assert got == validation


def test_more_hosts_than_files_is_refused_by_the_sharding_rule() -> None:
    s3 = FakeS3(["p/train/part-00000.parquet"])
    with pytest.raises(ValueError, match="gets no train data"):
        host_share(s3, "b", "p/train/", name="train", distribution="ShardedByS3Key", rank=1, hosts=2)


def test_file_spread_is_largest_over_smallest() -> None:
    s3 = FakeS3(["p/a", "p/bbb", "q/c"])  # sizes 103 and 105 under p/
    spread = training_scale.file_spread(s3, "b", "p/")
    assert spread["files"] == 2
    assert spread["spread"] == pytest.approx(105 / 103)


class _Echo(socketserver.BaseRequestHandler):
    """Reads one request of known length, answers with twice as many bytes, closes."""

    def handle(self) -> None:
        size = int(self.request.recv(8).decode())
        got = 0
        while got < size:
            got += len(self.request.recv(65536))
        self.request.sendall(b"y" * (2 * size))


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _exchange(port: int, size: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{size:08d}".encode() + b"x" * size)
        received = 0
        while chunk := sock.recv(65536):
            received += len(chunk)
    return received


def test_the_relay_counts_every_byte_each_way_and_resets(echo_port: int) -> None:
    with CountingRelay(echo_port) as relay:
        assert _exchange(relay.port, 300_000) == 600_000
        assert _exchange(relay.port, 1_000) == 2_000
        assert relay.counts() == {
            "to_server": 8 + 300_000 + 8 + 1_000,
            "to_client": 602_000,
            "connections": 2,
        }
        relay.reset()
        assert _exchange(relay.port, 10) == 20
        assert relay.counts() == {"to_server": 18, "to_client": 20, "connections": 1}


def test_100_gb_on_paper_needs_several_lambda_runs_at_100_mb_s() -> None:
    costs = training_scale.paper_costs(100.0, 100.0, unload_minutes=(20.0, 10.0, 5.0))
    client = costs["client"]
    assert client["seconds"] == pytest.approx(1000.0)
    assert not client["fits_one_lambda"]
    assert client["lambda_invocations_needed"] == 2
    # 1000 s x 2 GB x the arm64 GB-second price, plus two requests
    assert client["lambda_usd"] == pytest.approx(1000 * 2 * 0.0000133334 + 2 * 0.2e-6)
    assert client["nat_usd"] == pytest.approx(4.5)
    # Medium = 4 credits/hour, 10 minutes, at $2 and $4 a credit
    medium = costs["unload"]["warehouse_usd"]["Medium"]
    assert medium[0] == pytest.approx(4 * 2.0 / 6) and medium[-1] == pytest.approx(4 * 4.0 / 6)


def test_a_benchmarks_own_tables_appear_in_the_report() -> None:
    doc = {
        "name": "training_scale",
        "title": "t",
        "date": "2026-12-01T00:00:00Z",
        "repetitions": 1,
        "machine": {
            "cpu": "c",
            "cores": 2,
            "memory_gib": 1,
            "arch": "x",
            "os": "o",
            "python": "p",
            "load_average": [0],
        },
        "status": "ok",
        "summary": "s",
        "metrics": [],
        "targets": [],
        "details": {"tables": [{"title": "By size", "columns": ["rows", "s"], "rows": [["100,000", "1.5"]]}]},
    }
    text = render([doc])
    assert "By size:\n\n| rows | s |\n|---|---|\n| 100,000 | 1.5 |" in text
