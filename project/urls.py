"""URL configuration: the Django admin, which carries the Backups page."""
from django.contrib import admin
from django.urls import path

from . import celery_app  # noqa: F401  (the admin's jobs are sent with the project's Celery app and broker)

urlpatterns = [
    path("admin/", admin.site.urls),
]
