"""Student architectures in a registry. Importing this package registers every family."""

from students import arch, pruned, rep3, res3, resdw, starter  # noqa: F401  (registers their students)
from students.registry import (
    BUDGET,
    canonical,
    count_macs,
    count_params,
    create_student,
    deployed,
    fit_to_budget,
    is_student,
    list_students,
    rebuild,
    register_student,
)

__all__ = [
    "BUDGET",
    "canonical",
    "count_macs",
    "count_params",
    "create_student",
    "deployed",
    "fit_to_budget",
    "is_student",
    "list_students",
    "rebuild",
    "register_student",
]
