"""Load the registered model safely: skops only (pickle runs code), and the inputs it must be fed.

The model decides which features it needs: its run's ``feature_service`` tag names the Feast service it
was trained on, and its signature fixes the column order. Only the ``champion`` alias (or an explicit
URI) is served: promotion is a decision ``train`` records, so an unpromoted version is never picked up.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

from training.contract import CHAMPION_ALIAS, DEFAULT_FEATURE_SERVICE
from training.errors import InputError
from training.infra import settings


@dataclass(frozen=True)
class LoadedModel:
    """A registered model loaded once, with what it needs to be fed: its service and its column order."""

    uri: str  # concrete: models:/name/version, runs:/..., or what the user passed
    label: str  # how it was chosen, for the output
    estimator: Any  # a fitted scikit-learn classifier (Pipeline) with predict_proba
    inputs: list[str]  # column order of the signature
    feature_service: str


def _mlflow_error(exc: Exception) -> str:
    text = " ".join(str(getattr(exc, "message", exc)).split())
    return text[:300]


def resolve_model_uri(uri: str | None, registered_model: str) -> tuple[str, str]:
    """(URI to load, how it was chosen): ``uri`` when given, else the version holding the ``champion`` alias.

    Without the alias nothing is served: the newest version may be an unaudited ``--skip-audit`` run or one
    that lost to the champion, and serving it would undo the promotion decision.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if uri:
        return uri, uri
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(registered_model, CHAMPION_ALIAS)
        return f"models:/{registered_model}/{version.version}", f"{registered_model} v{version.version} (champion)"
    except MlflowException:
        pass  # no such alias, or no such model: say which
    quoted = registered_model.replace("'", "\\'")
    versions = client.search_model_versions(f"name = '{quoted}'")
    where = settings.without_credentials(settings.mlflow_tracking_uri())
    if not versions:
        raise InputError(
            f"no registered model {registered_model!r} in MLflow at {where}: run `python -m training train` "
            "first, or pass --model-uri"
        )
    newest = max(int(v.version) for v in versions)
    raise InputError(
        f"model {registered_model!r} has {len(versions)} version(s) but none is '{CHAMPION_ALIAS}': promote one "
        f"(`python -m training train --promote`, or MLflow's set_registered_model_alias) or pass "
        f"--model-uri models:/{registered_model}/{newest}"
    )


# Types beyond skops' own safe set that the trainer's Pipeline(RobustScaler, LGBMClassifier) needs. skops builds
# only trusted types, but MLflow reads the trusted list from the model's own MLmodel file, which a crafted model
# writes itself; so the list is fixed here instead.
SKOPS_TYPES = frozenset({"collections.OrderedDict", "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMClassifier"})
TRUST_OPTION = "--trust-pickle"


def load_model(uri: str | None = None, registered_model: str | None = None, trust_pickle: bool = False) -> LoadedModel:
    """Download the model once, read its signature and its run's feature service, and load it.

    Only skops-format scikit-learn models holding the trainer's types are deserialised unless
    ``trust_pickle``: loading pickle (or an arbitrary skops type) can run code from the model file.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's and SQLAlchemy's deprecation notices are not the user's
        return _load_model(uri, registered_model, trust_pickle)


def _load_model(uri: str | None, registered_model: str | None, trust_pickle: bool) -> LoadedModel:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from training.config import default_config

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one download, no bar on stderr
    mlflow.set_tracking_uri(settings.check_mlflow())
    registered_model = registered_model or default_config().mlflow.registered_model
    concrete, label = resolve_model_uri(uri, registered_model)
    try:
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(artifact_uri=concrete, dst_path=folder)
            info = Model.load(local)  # the MLmodel YAML only: nothing is deserialised yet
            estimator = _deserialise(concrete, local, info, trust_pickle)
        tags = mlflow.MlflowClient().get_run(info.run_id).data.tags if info.run_id else {}
    except (MlflowException, OSError) as exc:
        raise InputError(f"cannot load model {concrete}: {_mlflow_error(exc)}") from None
    if not hasattr(estimator, "predict_proba"):
        raise InputError(f"model {concrete} has no predict_proba: predict serves classifiers")
    if info.signature is not None:
        inputs = list(info.signature.inputs.input_names())
    elif hasattr(estimator, "feature_names_in_"):
        inputs = [str(name) for name in estimator.feature_names_in_]
    else:
        raise InputError(f"model {concrete} has no signature: its input columns (and their order) are unknown")
    service = tags.get("feature_service") or DEFAULT_FEATURE_SERVICE
    return LoadedModel(concrete, label, estimator, inputs, service)


def _deserialise(uri: str, local: str, info: Any, trust_pickle: bool) -> Any:
    """The estimator, after refusing (before any byte of it is deserialised) what could run code."""
    import mlflow.sklearn

    flavor = info.flavors.get("sklearn")
    if flavor is None:
        flavors = ", ".join(sorted(info.flavors)) or "none"
        raise InputError(f"model {uri} has no scikit-learn flavour (it has: {flavors}): predict serves `train`'s")
    fmt = flavor.get("serialization_format", "pickle")
    if fmt != "skops":
        if not trust_pickle:
            raise InputError(
                f"model {uri} is saved as {fmt}, which can run code when loaded: only skops models (what `train` "
                f"logs) are loaded; pass {TRUST_OPTION} if you trust where it came from"
            )
        return mlflow.sklearn.load_model(local)
    return _load_skops(uri, os.path.join(local, flavor.get("pickled_model", "model.skops")), trust_pickle)


def _load_skops(uri: str, path: str, trust_pickle: bool) -> Any:
    """skops with the trusted types fixed here, not the list the model file brings along."""
    import zipfile

    import skops.io

    try:
        needed = skops.io.get_untrusted_types(file=path)  # read from the file's schema, nothing constructed
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise InputError(f"cannot load model {uri}: {path} is not a skops file ({exc})") from None
    beyond = sorted(set(needed) - SKOPS_TYPES)
    if beyond and not trust_pickle:
        raise InputError(
            f"model {uri} needs types the trainer never writes ({', '.join(beyond)}), which can run code when "
            f"loaded; pass {TRUST_OPTION} if you trust where it came from"
        )
    return skops.io.load(path, trusted=needed)
