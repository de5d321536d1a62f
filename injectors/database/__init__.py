"""Database faults against PostgreSQL and Redis (``database.*`` fault types)."""
