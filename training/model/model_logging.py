"""Log a fitted scikit-learn Pipeline to the active MLflow run in skops format: the one way models are logged.

skops (not pickle) so that loading the model cannot run code; the trusted types are the pipeline's own, which
:mod:`training.serving.model_loading` checks against the types the trainer writes before loading.
"""

from __future__ import annotations

from typing import Any


def log_skops_model(pipeline: Any, example: Any, *, signature: Any = None, registered_model: str | None = None,
                    pip_requirements: list[str] | None = None) -> Any:  # fmt: skip
    """``mlflow.sklearn.log_model`` of ``pipeline`` under ``model`` in skops format, scored by ``predict_proba``.

    ``signature`` defaults to the one ``example`` and its predicted probabilities give. ``registered_model``
    also registers a version (``train`` registers separately, once the run has passed its audit).
    ``pip_requirements`` skips MLflow's seconds-long inference of them (tests and benchmarks)."""
    import mlflow.sklearn
    import skops.io
    from mlflow.models import infer_signature

    if signature is None:
        signature = infer_signature(example, pipeline.predict_proba(example))
    return mlflow.sklearn.log_model(
        pipeline,
        name="model",
        serialization_format="skops",
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)),
        signature=signature,
        input_example=example,
        registered_model_name=registered_model,
        pyfunc_predict_fn="predict_proba",
        pip_requirements=pip_requirements,
    )
