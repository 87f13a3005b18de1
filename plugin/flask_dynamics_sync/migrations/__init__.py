"""The plugin's Alembic environment (see :mod:`flask_dynamics_sync.schema`)."""
