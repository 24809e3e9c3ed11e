import pytest

from mljobs.errors import ModelError, UsageError
from mljobs.predictor import load_predictor
from mljobs.store import ModelRef, ModelStore


def publish_text(store: ModelStore, name: str, text: str) -> str:
    return store.publish(name, lambda folder: (folder / "model.txt").write_text(text))


def test_versions_count_up_and_latest_follows(tmp_path):
    store = ModelStore(tmp_path)
    assert publish_text(store, "m", "a") == "1"
    assert publish_text(store, "m", "b") == "2"
    assert store.aliases("m") == {"latest": "2"}
    assert store.resolve(ModelRef.parse("m")) == "2"
    store.set_alias("m", "production", "1")
    assert store.resolve(ModelRef.parse("m")) == "1"  # production wins over latest
    assert store.resolve(ModelRef.parse("m:2")) == "2"


def test_failed_publish_leaves_nothing(tmp_path):
    store = ModelStore(tmp_path)

    def broken(folder):
        (folder / "half.txt").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.publish("m", broken)
    assert store.versions("m") == []
    assert list((tmp_path / "m").iterdir()) == []


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda f: (f / "model.txt").write_text("evil"), "does not match its MANIFEST"),
        (lambda f: (f / "model.txt").unlink(), "is missing"),
        (lambda f: (f / "payload.pkl").write_bytes(b"x"), "not in its MANIFEST"),
        (lambda f: (f / "MANIFEST").unlink(), "has no MANIFEST"),
    ],
    ids=["modified", "removed", "added", "no-manifest"],
)
def test_tampered_versions_are_refused(tmp_path, damage, reason):
    store = ModelStore(tmp_path)
    version = publish_text(store, "m", "good")
    damage(tmp_path / "m" / version)
    with pytest.raises(ModelError, match=reason):
        store.open_version("m", version)


def test_a_flipped_byte_in_a_real_model_is_refused(demo_store):
    store = ModelStore(demo_store / "models")
    model_file = demo_store / "models" / "demo" / "1" / "model.lgb.txt"
    original = model_file.read_bytes()
    try:
        model_file.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
        with pytest.raises(ModelError, match="model.lgb.txt' does not match"):
            load_predictor(store, "demo")
    finally:
        model_file.write_bytes(original)


@pytest.mark.parametrize("text", ["", "a b", "m@", "../etc", "m:1:2x"])
def test_bad_references_are_usage_errors(text):
    with pytest.raises(UsageError):
        ModelRef.parse(text)


def test_unknown_model_names_what_exists(tmp_path):
    store = ModelStore(tmp_path)
    publish_text(store, "known", "x")
    with pytest.raises(ModelError, match="models: known"):
        store.resolve(ModelRef.parse("other"))


def test_publish_sweeps_staging_left_by_killed_writers_but_not_live_ones(tmp_path):
    import os
    import time

    store = ModelStore(tmp_path)
    publish_text(store, "m", "a")
    dead, live = tmp_path / "m" / ".staging-dead", tmp_path / "m" / ".staging-live"
    dead.mkdir()
    live.mkdir()
    week_ago = time.time() - 7 * 86400
    os.utime(dead, (week_ago, week_ago))
    publish_text(store, "m", "b")
    assert not dead.exists() and live.exists()
    assert store.versions("m") == ["1", "2"]


def promoted_twice(root):
    """A store where production went 1 -> 2, so a rollback would go back to 1."""
    store = ModelStore(root)
    publish_text(store, "m", "a")
    publish_text(store, "m", "b")
    store.promote("m", "1", "production")
    store.promote("m", "2", "production")
    return store


def test_rollback_refuses_a_tampered_version_and_leaves_the_alias(tmp_path):
    store = promoted_twice(tmp_path)
    (tmp_path / "m" / "1" / "model.txt").write_text("evil")
    with pytest.raises(ModelError, match="m:1 is refused: file 'model.txt' does not match"):
        store.rollback("m", "production")
    assert store.aliases("m")["production"] == "2"
    assert store.alias_history("m", "production") == ["1"]


def test_rollback_to_a_version_that_is_gone_is_refused(tmp_path):
    import shutil

    store = promoted_twice(tmp_path)
    shutil.rmtree(tmp_path / "m" / "1")
    with pytest.raises(ModelError, match="no version 1"):
        store.rollback("m", "production")
    assert store.aliases("m")["production"] == "2"
