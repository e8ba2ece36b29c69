"""Teachers of the privileged modality; each module registers itself in ``TEACHERS``."""
from mmpkd_core.teachers import tabular, text  # noqa: F401  (fill the registry)
from mmpkd_core.teachers import controls  # noqa: I001  (the controls after the teachers they are matched to)
from mmpkd_core.teachers.base import FIT_COUNT, TEACHERS, Teacher, TeacherOutputs, teacher_outputs

controls.register_controls()  # one matched control per privileged teacher, once they are all registered

__all__ = ["FIT_COUNT", "TEACHERS", "Teacher", "TeacherOutputs", "teacher_outputs"]
