"""Scheduled training: the Training construct and the pipeline definition it renders."""

from .pipeline_definition import PipelineDefinitionError, PipelineSpec, build_definition
from .training import EXPORT_SOURCE, Training, TrainingNames, TrainingSchedule, export_code

__all__ = [
    "EXPORT_SOURCE",
    "PipelineDefinitionError",
    "PipelineSpec",
    "Training",
    "TrainingNames",
    "TrainingSchedule",
    "build_definition",
    "export_code",
]
