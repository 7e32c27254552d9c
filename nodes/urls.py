from django.urls import path

from nodes import views

app_name = "nodes"
urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.create, name="create"),
    path("check-host/", views.check_host_view, name="check_host"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/edit/", views.edit, name="edit"),
    path("<int:pk>/credentials/", views.credentials, name="credentials"),
    path("<int:pk>/rotate-token/", views.rotate_token, name="rotate_token"),
    path("<int:pk>/delete/", views.delete, name="delete"),
    path("<int:pk>/allocations/", views.allocations, name="allocations"),
    path(
        "<int:pk>/allocations/delete/",
        views.delete_allocations,
        name="delete_allocations",
    ),
]
