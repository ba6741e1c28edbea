"""Export: a study's final model as a MONAI bundle (:mod:`proxyhpo.export.bundle`), logged to MLflow and registered in its model registry."""
