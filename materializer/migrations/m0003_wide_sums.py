"""Sums that can never overflow, and seen event ids of applied events only.

Money sums become DECIMAL(38,2) and unit sums HUGEINT (docs/EVENTS.md, "Limits"): two
orders of the largest amount in one hour and channel passed DECIMAL(18,2), and a line's
quantity times its unit price could pass it alone. A single value keeps its narrower
column (the limits bound it). ``invoices.paid`` is a sum of payments.

``seen_events`` stops holding the ids of rejected messages (docs/EVENTS.md, "Bad
events"): a rejected message no longer makes its id a duplicate of anything.
"""

from materializer.migrations.m0002_seen_events import APPLIED_EVENT_IDS

SQL = f"""
ALTER TABLE sales_by_hour ALTER gross_revenue TYPE DECIMAL(38, 2);
ALTER TABLE sales_by_hour ALTER cancelled_revenue TYPE DECIMAL(38, 2);
ALTER TABLE sales_by_hour ALTER units TYPE HUGEINT;
ALTER TABLE sales_by_hour ALTER cancelled_units TYPE HUGEINT;

ALTER TABLE product_sales_by_hour ALTER revenue TYPE DECIMAL(38, 2);
ALTER TABLE product_sales_by_hour ALTER cancelled_revenue TYPE DECIMAL(38, 2);
ALTER TABLE product_sales_by_hour ALTER units TYPE HUGEINT;
ALTER TABLE product_sales_by_hour ALTER cancelled_units TYPE HUGEINT;

ALTER TABLE stock_snapshot ALTER on_hand TYPE HUGEINT;

ALTER TABLE invoices ALTER paid TYPE DECIMAL(38, 2);

DELETE FROM seen_events
WHERE h IN (
    SELECT md5_number_lower(event_id) FROM rejected_events WHERE event_id IS NOT NULL
    EXCEPT
    SELECT md5_number_lower(event_id) FROM (
{APPLIED_EVENT_IDS}
    )
);
"""
