"""Small host consoles of the kinds the plugin is embedded in, written as their owners write them.

Each module has ``create_app(database_url)`` (or, for the app-factory host, module-level
extension objects and ``create_app``) and adds the plugin the way its README section says
for that kind of host. ``tests/test_hosts.py`` checks every plugin URL in each of them.
"""
