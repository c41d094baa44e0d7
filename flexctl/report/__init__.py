"""The electronic batch record: one batch's report from the record store, as HTML or JSON.

:mod:`~flexctl.report.model` builds a :class:`~flexctl.report.model.BatchReport`
from a store and a batch id; :mod:`~flexctl.report.html` renders it as one
self-contained HTML file (trend plots from :mod:`~flexctl.report.plots` embedded),
:mod:`~flexctl.report.json_export` as JSON.
"""
