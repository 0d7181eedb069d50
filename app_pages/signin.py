"""The sign-in gate every page view passes (dashboard.py): who is signed in, or the sign-in form and a stop.

A session is found in this browser tab's state, else in the sign-in cookie the browser sent with the websocket's
handshake (a reload, a bookmark, another tab; app_pages/web.py sets it), so a sign-in lasts its lifetime and the page
asked for is the page shown. The cookie is handed over just after signing in and cleared on signing out; the store
only ever holds its token's hash. With `AIO_AUTH=off` (a single-user laptop, loopback only) there is no sign-in.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from aio_core.workflows import USER_ERRORS
from aio_core.workflows.accounts import add_first_admin, sign_in, sign_in_school, sign_out, viewer_of_session
from app_pages import web
from app_pages.state import act, can, database, flash, read, settings, show_flash
from app_pages.text import md, t
from db.access import EVERYTHING
from db.users import SignInError, Viewer, count_users

LAPTOP = Viewer("local", "Local user", "admin", frozenset(), None, EVERYTHING)


def _text(value: object) -> str | None:
    """A value from st.context as a string, or None (AppTest answers with stand-in objects)."""
    return value if isinstance(value, str) else None


def client() -> str:
    """Where this browser session connects from (for the sign-in throttle and the cookie handoff)."""
    return web.client_of(_text(st.context.ip_address), dict(st.context.headers))


def _session_id() -> str | None:
    context = get_script_run_ctx()
    return context.session_id if context else None


def viewer() -> Viewer:
    """The signed-in user, or the sign-in form (and a stop). With AIO_AUTH=off, the single local user."""
    st.session_state.pop("_viewer", None)
    if settings().auth == "off":
        from streamlit import config

        if not web.loopback(config.get_option("server.address")):  # the server refuses to start so; say it too
            st.error(md("AIO_AUTH=off serves every page without sign-in, so it runs only on a loopback address; "
                        "set server.address to localhost or AIO_AUTH=local."))
            st.stop()
        st.sidebar.warning(t("auth_off"))
        st.session_state["_viewer"] = LAPTOP
        web.allow_uploads(_session_id(), True)
        return LAPTOP
    found = _signed_in()
    web.allow_uploads(_session_id(), found is not None and can(found, "screen"))
    if found is not None:
        _hand_over_cookie()
        return found
    if "asked_for" not in st.session_state:  # a bookmark or a typed address: that page, once signed in
        st.session_state["asked_for"] = urlparse(_text(st.context.url) or "").path.removeprefix(web.base_path())
    if school_signed_in() and not st.session_state.get("school_refused"):
        _school_sign_in()
    sign_in_form()
    st.stop()


def page_asked_for() -> str | None:
    """The address of the page a signed-out visit asked for (`trends`), once, to open it after signing in."""
    return st.session_state.pop("asked_for", "").strip("/") or None


def _signed_in() -> Viewer | None:
    """The viewer of this tab's session, or of the browser's sign-in cookie; None when neither is valid."""
    token = st.session_state.get("auth_token")
    cookie = _text(st.context.cookies.get(web.COOKIE))
    if not token and cookie and cookie != st.session_state.get("_stale_cookie"):
        token = cookie
    if not token:
        return None
    try:
        found = viewer_of_session(database(), token)
    except SignInError as error:
        st.session_state.pop("auth_token", None)
        st.session_state["_stale_cookie"] = cookie
        st.session_state["clear_cookie"] = bool(cookie)
        st.session_state["auth_message"] = str(error)
        if school_signed_in():  # the provider's sign-in outlived ours: end it too, so sign-in is asked again
            st.logout()
            st.stop()
        return None
    st.session_state["auth_token"] = token
    st.sidebar.caption(t("signed_in_as", name=found.display_name, role=t(f"role_{found.role}")))
    st.sidebar.button(t("sign_out"), key="sign_out", on_click=_sign_out, args=(token, found.username))
    st.session_state["_viewer"] = found
    return found


def _start_session(token: str) -> None:
    """Signed in: keep the token for this tab, and hand the browser a code to fetch the cookie with."""
    st.session_state["auth_token"] = token
    st.session_state["cookie_code"] = web.handoff(token, client(), settings().session_hours * 3600)
    st.session_state.pop("clear_cookie", None)


def _hand_over_cookie() -> None:
    """Until the browser has fetched its cookie, a script on the page fetches it (the code works once)."""
    code = st.session_state.get("cookie_code")
    if not code:
        return
    if not web.handoff_pending(code):
        st.session_state.pop("cookie_code", None)
        return
    with st.sidebar:
        st.html(f"<script>fetch('{web.base_path()}/aio/session', {{method: 'POST', body: '{code}', "
                "credentials: 'same-origin', headers: {'Content-Type': 'text/plain'}})</script>",
                unsafe_allow_javascript=True)


def _clear_cookie() -> None:
    if st.session_state.pop("clear_cookie", False):
        st.html(f"<script>fetch('{web.base_path()}/aio/signout', {{method: 'POST', credentials: 'same-origin'}})"
                "</script>", unsafe_allow_javascript=True)


def _sign_out(token: str, username: str) -> None:
    """The Sign out button's callback (a callback, because the click's own rerun does not reach a widget in the
    entry point's sidebar before st.navigation in Streamlit 1.67)."""
    act(sign_out, token, username)
    st.session_state.pop("auth_token", None)
    st.session_state.pop("cookie_code", None)
    st.session_state["_stale_cookie"] = token
    st.session_state["clear_cookie"] = True
    if school_signed_in():
        st.logout()  # ends the provider's sign-in too (its own sign-out page), then back here in a new session


def school_sign_in() -> bool:
    """Whether sign-in through the school's identity provider (Streamlit's st.login, OIDC) is configured: an
    `[auth]` section in .streamlit/secrets.toml (README, Security)."""
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return False


def school_signed_in() -> bool:
    return school_sign_in() and bool(st.user.is_logged_in)


def _school_sign_in() -> None:
    """Back from the school's identity provider: its verified address picks the account, if there is one, and the
    account stays bound to the provider's subject that first signed in with it."""
    hours = timedelta(hours=settings().session_hours)
    token, problem = act(sign_in_school, st.user.get("email"), verified=st.user.get("email_verified") is True,
                         issuer=str(st.user.get("iss", "")), subject=str(st.user.get("sub", "")),
                         lifetime=hours) or (None, None)
    if token:
        _start_session(token)
        st.rerun()
    st.session_state["school_refused"] = problem


def sign_in_form() -> None:
    st.title(t("app_title"))
    show_flash()  # e.g. the first administrator just created, said after the rerun that shows this form
    _clear_cookie()
    if read(count_users) == 0:
        first_admin_form()
        return
    if st.session_state.get("auth_message"):
        st.info(md(st.session_state.pop("auth_message")))
    if school_sign_in():
        refused = st.session_state.get("school_refused")
        if refused:
            st.error(md(refused))
            if st.button(t("oidc_other_account"), key="school_other"):
                st.session_state.pop("school_refused", None)
                st.logout()
        elif st.button(t("oidc_sign_in"), key="school_sign_in", type="primary"):
            st.login()
        st.caption(t("oidc_or_local"))
    with st.form("sign_in"):
        username = st.text_input(t("username"), key="signin_user", max_chars=200)
        password = st.text_input(t("password"), type="password", key="signin_password", max_chars=1024)
        pressed = st.form_submit_button(t("sign_in"))
    if pressed:
        try:  # a failed attempt is counted and logged, so the store is written either way
            token, problem = sign_in(database(), username, password, client=client(),
                                     lifetime=timedelta(hours=settings().session_hours))
        except USER_ERRORS as error:
            st.error(md(error))
            return
        if problem:
            st.error(md(problem))
            return
        _start_session(token)
        st.rerun()


def first_admin_form() -> None:
    st.info(t("first_admin"))
    with st.form("first_admin"):
        username = st.text_input(t("username"), key="first_user")
        display = st.text_input(t("display_name"), key="first_display")
        password = st.text_input(t("password"), type="password", key="first_password")
        again = st.text_input(t("password_again"), type="password", key="first_again")
        pressed = st.form_submit_button(t("create_admin"))
    if pressed:
        if password != again:
            st.error(t("passwords_differ"))
            return
        if act(add_first_admin, username, password, display_name=display) is None:  # refused: said why
            return  # (False: another browser was quicker; the sign-in form follows)
        flash(t("admin_created", name=username.strip().lower()))  # st.success here would vanish with the rerun
        st.rerun()
