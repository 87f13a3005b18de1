"""The host's own Flask-Admin console: its index page, its model views, its access policy."""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import Flask
from flask import current_app
from flask.typing import ResponseReturnValue
from flask_admin import Admin
from flask_admin import AdminIndexView
from flask_admin import expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.form import SecureForm
from flask_admin.theme import Bootstrap4Theme
from flask_babel import LazyString
from flask_babel import lazy_gettext

from . import auth
from .models import SYNCED_MODELS
from .models import Company
from .models import Customer
from .models import Deal
from .models import Prospect
from .models import db
from .security import csp_nonce

CONSOLE_NAME = "Acme CRM console"


class SignedInOnly:
    """Access policy of every host view: signed-in users only; others go to the login page.

    The plugin's views follow it too: by default they ask the admin index view.
    """

    def is_accessible(self) -> bool:
        return auth.is_signed_in()

    def inaccessible_callback(self, name: str, **kwargs: t.Any) -> ResponseReturnValue:
        return auth.login_redirect()


class ConsoleIndexView(SignedInOnly, AdminIndexView):
    """``/admin/``: what the console holds and who is looking."""

    @expose("/")
    def index(self) -> str:
        counts = [
            (label, SYNCED_MODELS[model], db.session.scalar(sa.select(sa.func.count()).select_from(model)))
            for model, _endpoint, label, _view in CRM_SCREENS
        ]
        # The plugin's views on this console (their endpoints are the plugin's business).
        sync_views = [v for v in current_app.extensions["dynamics_sync"].views if v.admin is self.admin]
        return self.render("example_host/admin_index.html", counts=counts, sync_views=sync_views)


class CrmModelView(SignedInOnly, ModelView):
    """A host model screen: everyone signed in may browse, operators may also create and edit.

    There is no delete: the plugin syncs inserts and updates only.
    """

    form_base_class = SecureForm
    can_delete = False
    can_view_details = True
    page_size = 25
    column_exclude_list = ["updated_at"]
    column_labels = {
        "name": lazy_gettext("Name"),
        "industry": lazy_gettext("Industry"),
        "city": lazy_gettext("City"),
        "country": lazy_gettext("Country"),
        "website": lazy_gettext("Website"),
        "email": lazy_gettext("Email"),
        "phone": lazy_gettext("Phone"),
        "company": lazy_gettext("Company"),
        "company_name": lazy_gettext("Company"),
        "source": lazy_gettext("Source"),
        "status": lazy_gettext("Status"),
        "amount": lazy_gettext("Amount"),
        "stage": lazy_gettext("Stage"),
        "close_date": lazy_gettext("Close date"),
    }
    form_excluded_columns = ["updated_at", "customers", "deals"]

    @property  # type: ignore[override]
    def can_create(self) -> bool:
        return auth.is_operator()

    @property  # type: ignore[override]
    def can_edit(self) -> bool:
        return auth.is_operator()


class CompanyView(CrmModelView):
    column_list = ["name", "industry", "city", "country", "website"]
    column_searchable_list = ["name", "city"]
    column_filters = ["industry", "country"]
    column_default_sort = "name"


class CustomerView(CrmModelView):
    column_list = ["name", "email", "phone", "company"]
    column_searchable_list = ["name", "email"]
    column_default_sort = "name"


class ProspectView(CrmModelView):
    column_list = ["name", "company_name", "email", "source", "status"]
    column_searchable_list = ["name", "company_name", "email"]
    column_filters = ["status", "source"]
    column_default_sort = ("id", True)


class DealView(CrmModelView):
    column_list = ["name", "company", "amount", "stage", "close_date"]
    column_searchable_list = ["name"]
    column_filters = ["stage"]
    column_default_sort = ("close_date", True)


#: The CRM menu: model, endpoint, screen name (in the selected language), view.
CRM_SCREENS: tuple[tuple[type, str, LazyString, type[CrmModelView]], ...] = (
    (Company, "companies", lazy_gettext("Companies"), CompanyView),
    (Customer, "customers", lazy_gettext("Customers"), CustomerView),
    (Prospect, "prospects", lazy_gettext("Prospects"), ProspectView),
    (Deal, "deals", lazy_gettext("Deals"), DealView),
)


def create_admin(app: Flask) -> Admin:
    """The console with its CRM screens; the plugin adds its menu to it afterwards."""
    admin = Admin(
        app,
        name=CONSOLE_NAME,
        index_view=ConsoleIndexView(name=lazy_gettext("Home")),
        theme=Bootstrap4Theme(base_template="example_host/admin_master.html", fluid=True),
        csp_nonce_generator=csp_nonce,
    )
    for model, endpoint, name, view_class in CRM_SCREENS:
        admin.add_view(view_class(model, db, name=name, category="CRM", endpoint=endpoint))
    return admin
