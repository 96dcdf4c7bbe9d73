"""The management API's JSON routes (``routes_query``, ``routes_config``, ``routes_admin``)
and their documented shapes (``models``), over the web kernel :mod:`m11_tenant.web`.

:func:`m11_tenant.app.create_app` assembles them with the console into one app;
``python -m m11_tenant serve`` runs it under uvicorn.
"""
