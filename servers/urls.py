from django.urls import path

from servers import views

app_name = "servers"
urlpatterns = [
    path("", views.index, name="index"),
    path("<slug:public_id>/", views.detail, name="detail"),
    path("<slug:public_id>/power/", views.power, name="power"),
]

admin_urlpatterns = (
    [
        path("", views.admin_index, name="index"),
        path("new/", views.create, name="create"),
        path("new/allocations/", views.create_allocations, name="create_allocations"),
        path("sftp-logins/", views.sftp_logins, name="sftp_logins"),
        path("<slug:public_id>/edit/", views.edit, name="edit"),
        path("<slug:public_id>/delete/", views.delete, name="delete"),
        path("<slug:public_id>/reinstall/", views.reinstall, name="reinstall"),
    ],
    "server_admin",
)
