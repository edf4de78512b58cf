"""Which model a start asks for against the one the service says it serves (its /info)."""
from tasks.host.model_asked import serves_asked_model


def test_a_folder_is_compared_by_its_real_path(tmp_path):
    folder = tmp_path / "qwen3-last"
    folder.mkdir()
    (tmp_path / "link").symlink_to(folder)
    info = {"model": "qwen3-last", "model_path": str(folder)}
    assert serves_asked_model(str(tmp_path / "link"), info)
    other = tmp_path / "bert-cls"
    other.mkdir()
    assert not serves_asked_model(str(other), info)


def test_a_hub_id_is_compared_by_the_served_name():
    info = {"model": "sentence-transformers/all-MiniLM-L6-v2", "model_path": "/x/snapshot"}
    assert serves_asked_model("sentence-transformers/all-MiniLM-L6-v2", info)
    assert not serves_asked_model("Qwen/Qwen3-Embedding-0.6B", info)
