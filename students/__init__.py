"""Student architectures in a registry. Importing this package registers every family."""

from students import pruned, res3, resdw, seed  # noqa: F401  (registers their students)
from students.registry import (
    BUDGET,
    count_params,
    create_student,
    fit_to_budget,
    list_students,
    rebuild,
    register_student,
)

__all__ = ["BUDGET", "count_params", "create_student", "fit_to_budget", "list_students", "rebuild", "register_student"]
