"""WSGI entry point for gunicorn or any WSGI server."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scep.settings")
application = get_wsgi_application()
# Import every view now, not on the first request: the analysis stack behind them
# (scipy, statsmodels, scikit-learn) takes seconds to import, which the first caller of
# each web process would otherwise wait for. With ``gunicorn --preload`` this happens
# once, in the master, and the workers share the imported code.
get_resolver().url_patterns  # noqa: B018
