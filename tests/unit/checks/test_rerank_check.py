"""The rerank steps' verdict on an order (tasks/checks/rerank_check.py); the steps themselves
run against the real host service and gateway in tests/e2e/checks/."""
from __future__ import annotations

from tasks.checks.rerank_check import DOCS, RELEVANT, ranking_problem


def test_relevant_document_first_passes():
    assert ranking_problem([RELEVANT, 0, 1]) is None


def test_the_order_sent_fails_naming_the_place():
    problem = ranking_problem(list(range(len(DOCS))))
    assert "place 3 of 3" in problem and DOCS[RELEVANT] in problem


def test_missing_or_repeated_documents_fail():
    assert "each of the 3" in ranking_problem([RELEVANT, 0])
    assert "each of the 3" in ranking_problem([RELEVANT, 0, 0])
