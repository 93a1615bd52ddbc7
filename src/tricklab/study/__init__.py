"""Studies: variants × seeds, their store and their statistics."""

from tricklab.study.results import StudyResults, load_results
from tricklab.study.statistics import analyze, compare, summarize
from tricklab.study.store import RunRecord, StudyStore

__all__ = ["RunRecord", "StudyResults", "StudyStore", "analyze", "compare", "load_results",
           "summarize"]
