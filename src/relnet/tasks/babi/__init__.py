"""bAbI: the 20 question-answering tasks, read from the official text files, learned jointly."""

from relnet.tasks.babi.data import TASK_NAMES, read_file, read_tasks, summarize
from relnet.tasks.babi.task import Babi

__all__ = ["TASK_NAMES", "Babi", "read_file", "read_tasks", "summarize"]
