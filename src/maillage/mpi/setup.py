"""Building the patient index from the settings (the model file, the thresholds)."""

from __future__ import annotations

import logging

from maillage.identity.model import Model, default_model
from maillage.mpi.index import PatientIndex
from maillage.settings import Settings

log = logging.getLogger(__name__)


def load_model(settings: Settings) -> Model:
    """The trained model if `maillage identity train` wrote one, else the defaults; the
    thresholds of the settings, when set, over the model's."""
    path = settings.identity_model_path
    model = Model.load(path) if path.exists() else default_model()
    if settings.identity_auto_link is not None or settings.identity_review is not None:
        model = model.with_thresholds(
            settings.identity_auto_link
            if settings.identity_auto_link is not None
            else model.thresholds.auto_link,
            settings.identity_review
            if settings.identity_review is not None
            else model.thresholds.review,
        )
    return model


def build_patient_index(settings: Settings) -> PatientIndex | None:
    if not settings.identity_index_enabled:
        return None
    model = load_model(settings)
    log.info(
        "patient index: %s model, auto-link at %.3f, review from %.3f",
        "trained" if model.trained else "untrained",
        model.thresholds.auto_link,
        model.thresholds.review,
    )
    return PatientIndex(model)
