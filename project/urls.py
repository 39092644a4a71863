"""URL configuration: the Django admin, which carries the Backups page."""
from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
