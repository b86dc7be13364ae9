"""The fine-tuning jobs one stack serves: degradation, classification, counting, chart QA, dialogue.

    from inspector.tasks import get_task, load_task

    task = get_task("classification")
    dataset = task.read("raw_data", seed=0)        # DatasetDict train/validation/test
    task = task.for_dataset(dataset)               # binds the class names
    task.save_config(adapter_dir)                  # inspector_task.json beside the adapter
    task = load_task(adapter_dir)                  # what the app serves it with

See `inspector.tasks.base.Task` for the interface, and train/recipes/*.yaml for a recipe per task.
"""

from __future__ import annotations

from inspector.tasks.base import (TASK_FILE, RankingItem, Task, build_dialogue_messages, build_task_inputs,
                                  load_task, metrics_table, task_from_config)
from inspector.tasks.chartqa import ChartQATask
from inspector.tasks.classification import ClassificationTask
from inspector.tasks.counting import CountingTask
from inspector.tasks.degradation import DegradationTask
from inspector.tasks.visdial import VisDialTask

TASKS: dict[str, type[Task]] = {
    task.name: task for task in (DegradationTask, ClassificationTask, CountingTask, ChartQATask, VisDialTask)
}
# The task of an adapter or a recipe that names none: the project's first, what the app inspects.
DEFAULT_TASK = DegradationTask.name


def get_task(name: str, **options) -> Task:
    """The task called `name` (a key of TASKS), built with its options (e.g. classes=[...])."""
    try:
        task_class = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; the tasks are: {', '.join(TASKS)}") from None
    unknown = set(options) - set(task_class.option_names())
    if unknown:
        raise ValueError(f"task {name!r} has no option {', '.join(sorted(unknown))}; "
                         f"its options are: {', '.join(task_class.option_names()) or 'none'}")
    return task_class(**options)


__all__ = ["DEFAULT_TASK", "TASKS", "TASK_FILE", "ChartQATask", "ClassificationTask", "CountingTask", "DegradationTask",
           "RankingItem", "Task", "VisDialTask", "build_dialogue_messages", "build_task_inputs", "get_task",
           "load_task", "metrics_table", "task_from_config"]
