"""REST endpoints owned by the injectors app (mounted under ``/api/v1/``)."""
