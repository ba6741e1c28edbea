"""Data sets: MSD folders (reading, validation, staging from S3) and synthetic phantoms."""

from proxyhpo.data.msd import CaseEntry, CaseVolumes, MSDDataset, load_dataset, read_case, validate_dataset
from proxyhpo.data.synthetic import synthetic_case, write_synthetic_dataset

__all__ = [
    "CaseEntry",
    "CaseVolumes",
    "MSDDataset",
    "load_dataset",
    "read_case",
    "validate_dataset",
    "synthetic_case",
    "write_synthetic_dataset",
]
