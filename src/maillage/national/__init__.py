"""National teleservices (INSi): their interfaces and local simulators.

Pure of SQL and web (``http.py`` alone imports Starlette); may import
``maillage.identity`` and ``maillage.errors``.
"""
