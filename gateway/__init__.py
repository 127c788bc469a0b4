"""Pulse BI gateway: typed GraphQL queries and live subscriptions over the materializer."""
