"""``invoices`` holds open items only (materializer/aggregates/receivables.py).

Invoices paid in full leave the table as their last payment is applied; this removes
the ones a file settled before that rule, so the receivables reads cost in proportion
to the open items on old files too.
"""

SQL = """
DELETE FROM invoices WHERE paid >= amount;
"""
