"""Thin KFP components, one per pipeline stage. Each converts its inputs, calls one library function
and writes its outputs; none holds logic of its own."""

from proxyhpo.kfp.components import (
    close_study,
    comparison_report,
    controller_init,
    controller_propose,
    controller_update,
    final_training,
    plan_cells,
    prepare_data,
    report,
    select_arm_data,
    select_data,
    start_study,
    study_report,
    train_cell,
    train_pack,
    trust_gate,
)
from proxyhpo.kfp.image import RUNTIME_IMAGE

__all__ = [
    "RUNTIME_IMAGE",
    "start_study",
    "close_study",
    "prepare_data",
    "select_data",
    "controller_init",
    "controller_propose",
    "train_pack",
    "controller_update",
    "final_training",
    "report",
    "plan_cells",
    "train_cell",
    "study_report",
    "select_arm_data",
    "comparison_report",
    "trust_gate",
]
