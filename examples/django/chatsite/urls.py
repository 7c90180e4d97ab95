"""The site's pages: Django's own login/logout views and one page that talks realtime."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("announce/", views.announce, name="announce"),
    path("", views.index, name="index"),
]
