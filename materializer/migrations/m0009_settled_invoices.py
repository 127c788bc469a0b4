"""``settled_invoices``: invoices paid in full, kept so that a later payment reopens them.

The open items (``invoices``) hold each invoice whose balance (amount - the sum of its payments)
is above zero; an invoice paid in full moves to ``settled_invoices`` and back when a
refund (a negative payment) or any later payment leaves a balance again (docs/EVENTS.md,
"What the materializer makes of them"). Before this migration a settled invoice was
dropped, and a refund after it was lost. The invoices a file settled before are
recovered from its raw rows; the ones whose raw rows were archived already cannot be,
and a refund of one of those still counts only in the raw tables (docs/OPERATIONS.md).
"""

SQL = """
CREATE TABLE settled_invoices AS SELECT * FROM invoices LIMIT 0;
INSERT INTO settled_invoices BY NAME
SELECT e.invoice_id, e.sequence, e.customer_id, e.order_id, e.amount, e.issued_on,
       e.due_date, e.site, coalesce(p.paid, 0) AS paid
FROM invoice_events e
LEFT JOIN (SELECT invoice_id, sum(amount) AS paid FROM payment_events GROUP BY invoice_id) p
    USING (invoice_id)
WHERE e.invoice_id NOT IN (SELECT invoice_id FROM invoices)
  AND coalesce(p.paid, 0) >= e.amount;
"""
