"""Sort-of-CLEVR: the paper's diagnostic dataset of simple shapes and relational questions."""

from relnet.tasks.sort_of_clevr.data import load_split, write_dataset
from relnet.tasks.sort_of_clevr.task import SortOfClevr

__all__ = ["SortOfClevr", "load_split", "write_dataset"]
