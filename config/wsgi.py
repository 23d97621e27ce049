import os

from django.core.wsgi import get_wsgi_application

# Fail closed: a process started without DJANGO_SETTINGS_MODULE runs the production settings,
# which refuse to start without their required variables; local ones are asked for by name.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
application = get_wsgi_application()
