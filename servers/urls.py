from django.urls import path

from servers import files, views

app_name = "servers"
urlpatterns = [
    path("", views.index, name="index"),
    path("<slug:public_id>/", views.detail, name="detail"),
    path("<slug:public_id>/power/", views.power, name="power"),
    path("<slug:public_id>/files/", files.browse, name="files"),
    path("<slug:public_id>/files/edit/", files.edit, name="files_edit"),
    path("<slug:public_id>/files/new/", files.create, name="files_create"),
    path("<slug:public_id>/files/rename/", files.rename, name="files_rename"),
    path("<slug:public_id>/files/delete/", files.delete, name="files_delete"),
    path("<slug:public_id>/files/download/", files.download, name="files_download"),
    path("<slug:public_id>/files/upload/", files.upload, name="files_upload"),
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
