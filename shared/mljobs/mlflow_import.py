"""`models import`: an MLflow model (a folder with an MLmodel file, or a `runs:/` / `models:/` URI
on a tracking server) published as a version of ours, so batch, HTTP and SQL serve it.

The schema comes from the model's MLflow signature (its input columns, in order, and their types;
a classifier's classes from the model itself), or from an example file the user gives. The model
is turned into one of our formats: a LightGBM booster into LightGBM's text model, a scikit-learn
model into skops. MLflow's pickles are read only through an allow-list (pickle_scan), unless the
user says --trust-pickle, which the version's metadata then records.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import BadInputError, ModelError, UsageError
from .estimators import Estimator
from .estimators.lightgbm_model import LightGBMEstimator
from .estimators.native_lightgbm import compile_native
from .estimators.sklearn_frame import SklearnFrameEstimator
from .estimators.sklearn_model import UntrustedTypeError, load_skops_bytes, outside_allow_list
from .pickle_scan import LIGHTGBM_NAMES, load_pickle  # nosec B403 - the allow-listed loader
from .predictor import METADATA_FILE, SCHEMA_FILE, installed_version, load_verified
from .runs import RunRecord
from .schema import BOOLEAN, CATEGORICAL, CLASSIFICATION, NUMERIC, REGRESSION, Feature, FeatureSchema, infer_feature

log = logging.getLogger("mljobs.import")

FLAVORS = ("lightgbm", "sklearn")
# MLflow's column types: our kind, and the dtype our schema records.
COLUMN_TYPES = {"double": (NUMERIC, "double"), "float": (NUMERIC, "float"), "long": (NUMERIC, "int64"),
                "integer": (NUMERIC, "int32"), "boolean": (BOOLEAN, "bool"), "string": (CATEGORICAL, "string")}


@dataclass
class Imported:
    """What an MLflow model becomes: our estimator and schema, and where it came from."""

    estimator: Estimator
    schema: FeatureSchema
    origin: dict[str, Any] = field(default_factory=dict)


# --- the command -----------------------------------------------------------------------------

def add_import_command(sub: Any) -> None:
    """`models import PATH --model NAME`, registered on the models job's subcommands."""
    p = sub.add_parser("import", help="publish an MLflow model (folder, runs:/ or models:/ URI) as a version")
    p.add_argument("source", help="an MLflow model folder (with its MLmodel file), or runs:/RUN/PATH or models:/NAME/VERSION")
    p.add_argument("--model", required=True, help="the model's name in the store")
    p.add_argument("--example", help="CSV or Parquet rows of the model's input columns, for a model saved without a signature")
    p.add_argument("--trust-pickle", action="store_true",
                   help="load a pickle even if it names types outside the allow-list (recorded in the version)")
    p.add_argument("--promote", help="also point this alias (e.g. production) at the new version")


def run_import(args: argparse.Namespace, store: Any, record: RunRecord) -> None:
    record.input = args.source
    with tempfile.TemporaryDirectory(prefix="mljobs-mlflow-") as scratch:
        folder = model_folder(args.source, Path(scratch))
        imported = read_mlflow_model(folder, args.example, args.trust_pickle)
    imported.origin["source"] = args.source
    version = publish_imported(store, args.model, imported, {"run_id": record.run_id, "created": record.started,
                                                             "source": args.source})
    load_verified(store.open_version(args.model, version))  # verified like any version, before anyone is told
    record.model = {"name": args.model, "version": version}
    if args.promote:
        store.promote(args.model, version, args.promote)
    message = (f"imported {args.source} ({imported.origin['flavor']} flavor, {imported.estimator.kind}) as "
               f"{args.model}:{version}" + (f", {args.model}@{args.promote}" if args.promote else ""))
    record.output = message
    print(message)


def model_folder(source: str, scratch: Path) -> Path:
    """The local folder of the model `source` names, downloading a runs:/ or models:/ URI."""
    if source.startswith(("runs:/", "models:/")):
        from .mlflow_rest import MlflowRest, tracking_uri

        uri = tracking_uri()
        if uri is None:
            raise UsageError(f"{source} is an MLflow URI: set MLFLOW_TRACKING_URI to the tracking server's address")
        client = MlflowRest(uri)
        artifact_uri = client.model_artifact_uri(source)
        if client.download_tree(artifact_uri, scratch / "model") == 0:
            raise ModelError(f"{source}: MLflow has no files at {artifact_uri}")
        return scratch / "model"
    folder = Path(source)
    if not folder.exists():
        raise UsageError(f"{source}: no such folder")
    if folder.is_file() and folder.name == "MLmodel":
        folder = folder.parent
    if not (folder / "MLmodel").is_file():
        raise ModelError(f"{source} is not an MLflow model: it has no MLmodel file")
    return folder


# --- reading an MLflow model -----------------------------------------------------------------

def read_mlflow_model(folder: Path, example: str | None = None, trust_pickle: bool = False) -> Imported:
    try:
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelError(f"the MLmodel file is unreadable: {exc}") from exc
    if not isinstance(mlmodel, dict):
        raise ModelError("the MLmodel file is not a mapping of flavors and settings")
    flavors = mlmodel.get("flavors") or {}
    flavor = next((f for f in FLAVORS if f in flavors), None)
    if flavor is None:
        raise ModelError(f"the MLflow model has the flavors {', '.join(flavors) or 'none'}; mljobs imports lightgbm and sklearn")
    conf = flavors[flavor] or {}
    columns = signature_columns(mlmodel, example)
    origin = {"from": "mlflow", "flavor": flavor, "model_class": conf.get("model_class"),
              "serialization_format": conf.get("serialization_format"), "mlflow_version": mlmodel.get("mlflow_version"),
              "mlflow_run_id": mlmodel.get("run_id"), "model_uuid": mlmodel.get("model_uuid"),
              "schema_from": "example file" if example else "signature", "trust_pickle": trust_pickle,
              "target": output_name(mlmodel)}
    data_file = folder / str(conf.get("data") or conf.get("pickled_model") or "")
    if not data_file.is_file() or data_file.parent.resolve() != folder.resolve():
        raise ModelError(f"the {flavor} flavor names the model file {data_file.name!r}, which is not in the folder")
    data = data_file.read_bytes()
    if flavor == "lightgbm" and data_file.suffix == ".lgb":
        return booster_model(text_booster(data), columns, origin)
    extra = LIGHTGBM_NAMES if flavor == "lightgbm" else frozenset()
    model = load_skops(data, extra, trust_pickle) if data_file.suffix == ".skops" else load_pickle(data, extra, trust_pickle)
    if flavor == "lightgbm" or type(model).__module__.startswith("lightgbm."):
        if not hasattr(model, "booster_"):
            raise ModelError(f"the lightgbm flavor holds a {type(model).__name__}, not a fitted LightGBM model")
        classes = [python_value(c) for c in model.classes_] if hasattr(model, "classes_") else None
        return booster_model(model.booster_, columns, origin, classes)
    return sklearn_model(model, columns, origin)


def signature_columns(mlmodel: dict[str, Any], example: str | None) -> list[Feature]:
    """The model's input columns, from its signature, or from the example file when one is given."""
    if example:
        return example_columns(example)
    inputs = (mlmodel.get("signature") or {}).get("inputs")
    specs = json.loads(inputs) if isinstance(inputs, str) else inputs
    if not specs:
        raise ModelError("the MLflow model has no signature, so its input columns are unknown: "
                         "give --example FILE (a few rows of its input columns), or save it with a signature")
    features = []
    for spec in specs:
        name, kind = spec.get("name"), spec.get("type")
        if not name or kind not in COLUMN_TYPES:
            raise ModelError(f"the MLflow signature has an input of type {kind!r}{f' ({name})' if name else ''}: mljobs "
                             f"takes named columns of types {', '.join(COLUMN_TYPES)} (or give --example FILE)")
        our_kind, dtype = COLUMN_TYPES[kind]
        features.append(Feature(name, our_kind, dtype))
    return features


def example_columns(example: str) -> list[Feature]:
    from .tableio import read_table, resolve_inputs

    try:
        table = read_table(resolve_inputs(example))
    except BadInputError as exc:
        raise UsageError(f"--example {example}: {exc}") from exc
    return [infer_feature(name, table.column(name)) for name in table.column_names]


def text_booster(data: bytes) -> Any:
    import lightgbm

    try:
        return lightgbm.Booster(model_str=data.decode("utf-8"))
    except (lightgbm.basic.LightGBMError, UnicodeDecodeError) as exc:
        raise ModelError(f"LightGBM cannot read the model file: {exc}") from exc


def load_skops(data: bytes, extra: frozenset[str], trust: bool) -> Any:
    """A model MLflow saved with skops, trusting only what our own loader trusts (the MLmodel's
    list of trusted types is the model's own say, so it is not taken)."""
    try:
        return load_skops_bytes(data, extra, trust_any=trust)
    except UntrustedTypeError as exc:
        raise ModelError(f"the model file is refused: {exc}; import it with --trust-pickle only if you trust "
                         "where it came from") from exc
    except ModelError as exc:
        raise ModelError(f"the model file is refused: {exc}") from exc


def python_value(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --- into our formats ------------------------------------------------------------------------

def booster_model(booster: Any, columns: list[Feature], origin: dict[str, Any], classes: list[Any] | None = None) -> Imported:
    names = booster.feature_name()
    by_name = {f.name: f for f in columns}
    if len(names) != len(columns):
        raise ModelError(f"the LightGBM model has {len(names)} features, its signature {len(columns)} columns")
    if set(names) == set(by_name):
        columns = [by_name[n] for n in names]  # the booster's own order, whatever the signature's
    levels = list(getattr(booster, "pandas_categorical", None) or [])
    categorical = [f for f in columns if f.kind == CATEGORICAL]
    if categorical and len(levels) != len(categorical):
        raise ModelError(f"column '{categorical[0].name}' is text, but the LightGBM model records no categories for it "
                         "(train it on a pandas 'category' column)")
    # LightGBM codes a pandas category as its position in the training data's categories: keep that order.
    codes = iter(levels)
    columns = [Feature(f.name, f.kind, f.dtype, tuple(str(v) for v in next(codes))) if f.kind == CATEGORICAL else f
               for f in columns]
    objective = str(booster.dump_model(num_iteration=1).get("objective", "regression")).split()[0]
    n_classes = booster.num_model_per_iteration() if objective.startswith("multiclass") else 2 if objective in (
        "binary", "cross_entropy", "xentropy") else 0
    task = CLASSIFICATION if n_classes else REGRESSION
    if classes is None:
        classes = list(range(n_classes))
    schema = FeatureSchema(tuple(columns), target_name(origin), task, tuple(classes) if task == CLASSIFICATION else ())
    origin["model_class"] = origin.get("model_class") or "lightgbm.basic.Booster"
    return Imported(LightGBMEstimator(booster, len(schema.classes)), schema, origin)


def sklearn_model(model: Any, columns: list[Feature], origin: dict[str, Any]) -> Imported:
    from sklearn.base import is_classifier

    classifier = is_classifier(model) and hasattr(model, "classes_")
    if classifier and not hasattr(model, "predict_proba"):
        raise ModelError(f"the {type(model).__name__} classifier gives no class probabilities (predict_proba)")
    levels = encoder_levels(model)
    text = [f for f in columns if f.kind == CATEGORICAL]
    for f in text:
        if not f.categories and f.name not in levels:
            raise ModelError(f"column '{f.name}' is text, and no encoder in the model lists its categories: "
                             "give --example FILE with rows that hold every category")
    columns = [Feature(f.name, f.kind, f.dtype, tuple(levels.get(f.name, f.categories))) if f.kind == CATEGORICAL else f
               for f in columns]
    classes = tuple(python_value(c) for c in model.classes_) if classifier else ()
    schema = FeatureSchema(tuple(columns), target_name(origin), CLASSIFICATION if classifier else REGRESSION, classes)
    origin["model_class"] = origin.get("model_class") or f"{type(model).__module__}.{type(model).__name__}"
    beyond = types_beyond_allow_list(model)
    if beyond and not origin.get("trust_pickle"):
        raise ModelError(f"the model holds the type {beyond[0]}, which is outside the allow-list "
                         "(scikit-learn, numpy, scipy types); import it with --trust-pickle only if you trust where it came from")
    origin["trusted_types"] = beyond  # what the loader will trust for this version, because the user said so
    return Imported(SklearnFrameEstimator(model, schema), schema, origin)


def encoder_levels(model: Any) -> dict[str, list[str]]:
    """Each input column's categories, from the fitted encoders (OneHotEncoder, OrdinalEncoder, ...)
    a Pipeline's ColumnTransformer applies to it."""
    found: dict[str, list[str]] = {}
    for step in getattr(model, "steps", None) and [s for _, s in model.steps] or [model]:
        for _name, transformer, selected in getattr(step, "transformers_", []):
            parts = [s for _, s in transformer.steps] if hasattr(transformer, "steps") else [transformer]
            encoder = next((p for p in parts if hasattr(p, "categories_")), None)
            if encoder is None or not isinstance(selected, (list, tuple, np.ndarray)):
                continue
            for column, categories in zip(selected, encoder.categories_):
                if isinstance(column, str):
                    found[column] = [str(c) for c in categories if isinstance(c, str)]
    return found


def types_beyond_allow_list(model: Any) -> list[str]:
    """The types in the model's skops file that our sklearn loader does not trust by itself."""
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception as exc:
        raise ModelError(f"the model cannot be saved in mljobs' scikit-learn format (skops): {exc}") from exc
    return outside_allow_list(untrusted)


def target_name(origin: dict[str, Any]) -> str:
    return str(origin.get("target") or "prediction")


def output_name(mlmodel: dict[str, Any]) -> str | None:
    """The signature's one named output column, if it has one (it names our target)."""
    outputs = (mlmodel.get("signature") or {}).get("outputs")
    try:
        specs = json.loads(outputs) if isinstance(outputs, str) else outputs
    except ValueError:
        return None
    return str(specs[0]["name"]) if isinstance(specs, list) and len(specs) == 1 and specs[0].get("name") else None


def publish_imported(store: Any, name: str, imported: Imported, provenance: dict[str, Any]) -> str:
    metadata = {
        "model": name,
        **provenance,
        "task": imported.schema.task,
        "estimator": {"kind": imported.estimator.kind, "name": imported.origin.get("model_class"), "params": {},
                      "libraries": list(imported.estimator.libraries)},
        "metrics": {},
        "evaluation": "imported from MLflow: not evaluated by mljobs",
        "imported": imported.origin,
        "trust_pickle": bool(imported.origin.get("trust_pickle")),
        "libraries": {lib: installed_version(lib) for lib in ("lightgbm", "scikit-learn", "skops", "numpy", "pyarrow")},
    }

    def write_files(folder: Path) -> None:
        imported.estimator.save(folder)
        if imported.estimator.kind == LightGBMEstimator.kind and store.key is not None:
            compile_native(folder)  # as training does: a signed LightGBM version gets its compiled predictor
        (folder / SCHEMA_FILE).write_text(imported.schema.to_json())
        (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2))

    version: str = store.publish(name, write_files)
    return version
