"""Teachers of the privileged modality; each module registers itself in ``TEACHERS``."""
from mmpkd_core.teachers import tabular, text  # noqa: F401  (fill the registry)
from mmpkd_core.teachers import controls  # noqa: F401,I001  (after the teachers its matched controls refer to)
from mmpkd_core.teachers.base import FIT_COUNT, TEACHERS, Teacher, TeacherOutputs, teacher_outputs

__all__ = ["FIT_COUNT", "TEACHERS", "Teacher", "TeacherOutputs", "teacher_outputs"]
