"""Signed stores: only a key holder can publish, and compiled predictors run only from signed
versions and give LightGBM's own predictions."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from mljobs.errors import ModelError, UsageError
from mljobs.estimators.lightgbm_model import LightGBMEstimator
from mljobs.estimators.native_lightgbm import NATIVE_FILE, NativeLightGBMEstimator, load_native
from mljobs.featurize import Featurizer
from mljobs.estimators.lightgbm_model import LIGHTGBM_FILE
from mljobs.predictor import load_predictor, load_verified
from mljobs.signing import SIGNATURE, signing_key
from mljobs.store import MANIFEST, ModelStore, write_manifest
from mljobs.training import TrainSpec, publish, train
from tests.datasets import multiclass_table, regression_table

KEY = "a-test-signing-key-of-32-bytes!!"


def binary_table() -> pa.Table:
    table = multiclass_table(800, seed=8)
    return table.set_column(4, "species", pa.array(np.where(np.asarray(table["x1"]) > 0, "yes", "no")))


def publish_signed(tmp_path, monkeypatch, table, target):
    trained = train(table, TrainSpec(target))
    store = ModelStore(tmp_path / "models", KEY.encode())
    version = publish(store, "m", trained, {"run_id": "test", "created": "now", "source": "test"})
    return store, version, Featurizer(trained.schema).transform_table(table).matrix


@pytest.mark.parametrize(
    "table, target",
    [(binary_table(), "species"), (multiclass_table(), "species"), (regression_table(), "price")],
    ids=["binary", "multiclass", "regression"],
)
def test_a_signed_version_scores_with_its_compiled_predictor_and_matches_lightgbm(tmp_path, monkeypatch, table, target):
    store, version, matrix = publish_signed(tmp_path, monkeypatch, table, target)
    folder = store.model_dir("m") / version
    assert (folder / SIGNATURE).is_file() and (folder / NATIVE_FILE).is_file()

    native = load_predictor(store, "m")
    assert isinstance(native.estimator, NativeLightGBMEstimator)
    text = load_predictor(ModelStore(store.root), "m")  # without the key the signature proves nothing: text model
    assert isinstance(text.estimator, LightGBMEstimator)
    big = np.repeat(matrix, 20, axis=0)  # enough rows for the threaded path too
    for rows in (matrix[:1], matrix, big):
        np.testing.assert_allclose(native.predict_raw(rows), text.predict_raw(rows), rtol=1e-12, atol=1e-12)


def test_with_a_key_unsigned_and_wrongly_signed_versions_are_refused(tmp_path, monkeypatch):
    store = ModelStore(tmp_path / "models")
    trained = train(regression_table(), TrainSpec("price"))
    publish(store, "m", trained, {"run_id": "test", "created": "now", "source": "test"})  # no key: unsigned
    store = ModelStore(store.root, KEY.encode())
    with pytest.raises(ModelError, match="m:1 is refused: it is not signed"):
        load_predictor(store, "m:1")
    publish(store, "m", trained, {"run_id": "test", "created": "now", "source": "test"})
    load_predictor(store, "m:2")
    store = ModelStore(store.root, b"another-key-of-enough-length")
    with pytest.raises(ModelError, match="m:2 is refused: it is not signed"):
        load_predictor(store, "m:2")


def test_swapped_native_code_with_a_rewritten_manifest_is_refused(tmp_path, monkeypatch):
    """Someone who can write the volume but has no key: replaces the compiled file and rewrites
    the MANIFEST to match. The signature no longer matches, so nothing is loaded."""
    store, version, _ = publish_signed(tmp_path, monkeypatch, regression_table(), "price")
    folder = store.model_dir("m") / version
    (folder / NATIVE_FILE).write_bytes(b"\x7fELF not the code that was signed")
    write_manifest(folder)
    with pytest.raises(ModelError, match="is not signed"):
        load_predictor(store, "m")


def test_files_changed_after_the_check_are_never_loaded(tmp_path, monkeypatch):
    """Loaders load the bytes that were checked, never the store's files again: files swapped
    between the check and the load change nothing (the text model used to be re-read)."""
    store, version, matrix = publish_signed(tmp_path, monkeypatch, regression_table(), "price")
    folder = store.model_dir("m") / version
    verified = store.open_version("m", version)
    expected = load_verified(verified).predict_raw(matrix)
    (folder / NATIVE_FILE).write_bytes(b"changed after the check")  # between the check and the load
    (folder / LIGHTGBM_FILE).write_text("tree\nchanged after the check\n")
    assert isinstance(load_native(verified, 0), NativeLightGBMEstimator)
    np.testing.assert_array_equal(load_verified(verified).predict_raw(matrix), expected)
    with pytest.raises(ModelError, match="does not match"):  # the store's copy is refused from now on
        store.open_version("m", version)


def test_the_signature_covers_the_manifest_not_itself(tmp_path, monkeypatch):
    store, version, _ = publish_signed(tmp_path, monkeypatch, regression_table(), "price")
    folder = store.model_dir("m") / version
    manifest = (folder / MANIFEST).read_text()
    assert SIGNATURE not in manifest and NATIVE_FILE in manifest
    assert hashlib.sha256((folder / NATIVE_FILE).read_bytes()).hexdigest() in manifest


def test_signing_keys_come_from_a_file_or_the_environment_and_must_be_long_enough(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    assert signing_key({"MLJOBS_SIGNING_KEY_FILE": str(key_file), "MLJOBS_SIGNING_KEY": "ignored"}) == KEY.encode()
    assert signing_key({"MLJOBS_SIGNING_KEY": KEY}) == KEY.encode()
    assert signing_key({}) is None
    with pytest.raises(UsageError, match="too short"):
        signing_key({"MLJOBS_SIGNING_KEY": "short"})
    with pytest.raises(UsageError, match="cannot read the signing key file"):
        signing_key({"MLJOBS_SIGNING_KEY_FILE": str(tmp_path / "missing")})
