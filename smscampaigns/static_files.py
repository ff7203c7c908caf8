"""Are the static files collected? Production pages cannot work without them.

With DEBUG off, every page names its CSS and JavaScript by the hashed names that
``manage.py collectstatic`` writes to STATIC_ROOT (with ``staticfiles.json``, the
manifest). Without a collection every admin page fails; with one from an older
release, pages that use a file added since fail. So the site refuses to start
(smscampaigns/wsgi.py, asgi.py) and ``check --deploy`` reports an error, each with the
command that fixes it, instead of a server that answers 500s.
"""

import os

from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.finders import get_finders
from django.contrib.staticfiles.storage import ManifestFilesMixin
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages

FIX = "Run `python manage.py collectstatic --no-input` (again after every upgrade)."


def _source_names() -> set[str]:
    """Every file collectstatic would collect, by the name pages use."""
    ignore = apps.get_app_config("staticfiles").ignore_patterns
    names = set()
    for finder in get_finders():
        for path, storage in finder.list(ignore):
            prefix = getattr(storage, "prefix", None)
            name = os.path.join(prefix, path) if prefix else path
            names.add(name.replace(os.sep, "/"))
    return names


def collection_problem() -> str | None:
    """What is wrong with STATIC_ROOT for serving with DEBUG off, or None."""
    storage = storages["staticfiles"]
    # Development (DEBUG) and plain storages name files as they are: nothing to check.
    if settings.DEBUG or not isinstance(storage, ManifestFilesMixin):
        return None
    if storage.read_manifest() is None:
        return (
            f"No collected static files in STATIC_ROOT ({settings.STATIC_ROOT}): "
            "pages cannot link their CSS and JavaScript."
        )
    collected, _ = storage.load_manifest()
    missing = sorted(_source_names() - collected.keys())
    if missing:
        shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
        return (
            f"{len(missing)} static file(s) are missing from the collection in "
            f"STATIC_ROOT ({settings.STATIC_ROOT}), e.g. {shown}: it is older than "
            "this release."
        )
    return None


def require_collected() -> None:
    """Stop the web server's start-up when the static files are not collected."""
    problem = collection_problem()
    if problem:
        raise ImproperlyConfigured(f"{problem} {FIX}")


@checks.register(checks.Tags.staticfiles, deploy=True)
def check_static_files_collected(app_configs=None, **kwargs):
    problem = collection_problem()
    if problem:
        return [checks.Error(problem, hint=FIX, id="smscampaigns.E001")]
    return []
