"""Aggregates: one module per concept, each with the events it consumes, its tables,
how a batch is applied (``probe`` then ``apply``) and its named queries (``QUERIES``).
"""

from __future__ import annotations

from materializer.aggregates import catalog, pipeline, receivables, sales, stock

#: Applied in this order within a batch's transaction. Catalog first, so a product or
#: customer arriving with the events that mention it is there for the change notice.
AGGREGATES = (catalog, sales, stock, receivables, pipeline)
