"""The store: SQLAlchemy 2.x models, engine and transactions, and every query of the product."""
