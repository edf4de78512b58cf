"""What the tasks read of the host service's reranking from its /info (reranker_info.py), and
the status document's `mlx.reranker` against its schema."""
from __future__ import annotations

import copy

import pytest

from tasks.host.reranker_info import COSINE, reranker_from_info, reranker_line
from tasks.stack.status_doc import StatusDocError, validate
from tests.unit.stack.test_status_doc import SEED_SHAPE

# The host's /info (mlx_service/http/served_models.py reranker_info)
LOADED = {"model": "all-MiniLM-L6-v2",
          "reranker": {"configured": True, "ranked_by": "reranker", "model": "xlmr-rerank",
                       "model_path": "/models/xlmr", "role": "reranker",
                       "kind": "sequence-classification",
                       "hf_architecture": "XLMRobertaForSequenceClassification",
                       "activation": "Sigmoid", "max_length": 256, "num_labels": 1}}


def test_a_loaded_reranker_is_named_with_its_facts():
    found = reranker_from_info(LOADED)
    assert found["name"] == "xlmr-rerank" and found["ranks_by"] == "reranker"
    assert (found["activation"], found["max_length"]) == ("Sigmoid", 256)
    assert found["path"] == "/models/xlmr" and found["num_labels"] == 1
    assert found["architecture"] == "XLMRobertaForSequenceClassification"
    assert found["role"] == "reranker"
    line = reranker_line(found)
    assert "xlmr-rerank" in line and "Sigmoid" in line and "256" in line


@pytest.mark.parametrize("info", [
    {"model": "all-MiniLM-L6-v2", "reranker": None},
    {"model": "all-MiniLM-L6-v2", "reranker": {}},
    {"model": "all-MiniLM-L6-v2", "reranker": {"configured": False,
                                               "ranked_by": "embedding-cosine"}},
])
def test_no_reranker_says_the_embedding_model_ranks_by_cosine(info):
    found = reranker_from_info(info)
    assert found["ranks_by"] == COSINE and found["name"] is None
    assert "cosine" in reranker_line(found) and "no RERANK_MODEL" in reranker_line(found)


def test_a_classifier_as_rerank_model_is_named_and_ranking_stays_cosine():
    found = reranker_from_info({"model": "m", "reranker": {
        "configured": True, "ranked_by": "embedding-cosine", "model": "bert-nli",
        "num_labels": 3}})
    assert (found["name"], found["ranks_by"]) == ("bert-nli", COSINE)
    assert "bert-nli serves /predict only" in reranker_line(found)


@pytest.mark.parametrize("info", [None, [], "text", {"model": "m"}])
def test_an_info_that_says_nothing_of_reranking_gives_none(info):
    assert reranker_from_info(info) is None


def test_facts_of_the_wrong_type_are_dropped_not_trusted():
    found = reranker_from_info({"reranker": {"model": "r", "max_length": "long",
                                             "activation": ["x"], "num_labels": True}})
    assert found["max_length"] is None and found["activation"] is None
    assert found["num_labels"] is None and found["name"] == "r"
    assert reranker_from_info({"rerank_model": "bge"})["name"] == "bge"


def test_status_document_with_a_reranker_validates():
    doc = copy.deepcopy(SEED_SHAPE)
    doc["mlx"]["reranker"] = reranker_from_info(LOADED)
    validate(doc)
    doc["mlx"]["reranker"] = reranker_from_info({"model": "m", "reranker": None})
    validate(doc)
    doc["mlx"]["reranker"] = None
    validate(doc)
    doc["mlx"]["reranker"] = {"name": "r", "ranks_by": "guess"}
    with pytest.raises(StatusDocError) as info:
        validate(doc)
    assert "mlx/reranker" in str(info.value)


def test_inv_status_text_names_the_reranker():
    from tasks.stack.status_text import status_text
    from tests.unit.stack.test_status_doc import full_doc
    doc = full_doc()
    doc["engine"]["compose"] = "2.26.1"
    doc["mlx"]["reranker"] = reranker_from_info(LOADED)
    assert "reranker: xlmr-rerank (kind sequence-classification, activation Sigmoid, " \
           "max_length 256)" in status_text(doc)
    doc["mlx"]["reranker"] = None
    assert "rerank" not in status_text(doc)
