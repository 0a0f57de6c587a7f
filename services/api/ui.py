"""The curation web UI: server-rendered pages over the same use cases as the API.

Login stores the pasted token in an HttpOnly, SameSite=Strict cookie; every form carries the
session's CSRF token, checked before any write. Pages: tasks; a task's candidates and approved
references with mask-overlay thumbnails (approve, reject, revoke, upload); jobs with states,
errors and per-slice confidence; the audit log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from rafss_core.app import App
from rafss_core.app import jobs as jobs_uc
from rafss_core.app import references as refs_uc
from rafss_core.app import tasks as tasks_uc
from rafss_core.app.audit_log import list_audit
from rafss_core.app.tokens import authenticate
from rafss_core.app.views import TokenView
from rafss_core.store.enums import Role
from services.api.auth import RBAC, SESSION_COOKIE, actor, csrf_token, get_app
from services.api.routers.references import disk_room

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


async def form_csrf(request: Request) -> None:
    """Read the form's CSRF token before the role check (which verifies it)."""
    if request.method == "POST":
        form = await request.form()
        request.state.form_csrf = form.get("csrf_token")


def _viewer(request: Request, app: App = Depends(get_app)) -> TokenView:
    token = request.cookies.get(SESSION_COOKIE)
    principal = authenticate(app, token) if token else None
    if principal is None:
        raise HTTPException(303, headers={"Location": "/ui/login"})
    return principal


def _render(request: Request, name: str, principal: TokenView | None, status_code: int = 200,
            **context: Any) -> HTMLResponse:
    token = request.cookies.get(SESSION_COOKIE)
    roles = {r.value: principal is not None and Role(principal.role).rank >= r.rank
             for r in Role}
    return templates.TemplateResponse(request, name, {
        "me": principal, "can": roles, "csrf": csrf_token(token) if token else "", **context},
        status_code=status_code)


def _back(url: str, message: str | None = None) -> RedirectResponse:
    from urllib.parse import quote

    return RedirectResponse(url + (f"?msg={quote(message)}" if message else ""), 303)


@router.get("/login")
def login_page(request: Request, error: str | None = None) -> HTMLResponse:
    return _render(request, "login.html", None, error=error)


def _same_origin(request: Request) -> None:
    """Login and logout have no session yet to derive a CSRF token from: refuse a post that a
    browser says came from another site (Origin, else Referer)."""
    from urllib.parse import urlsplit

    source = request.headers.get("origin") or request.headers.get("referer")
    if source and urlsplit(source).netloc != request.url.netloc:
        raise HTTPException(403, "cross-site login or logout refused")


@router.post("/login", dependencies=[Depends(_same_origin)])
def login(token: str = Form(...), app: App = Depends(get_app)) -> Response:
    if authenticate(app, token.strip()) is None:
        return RedirectResponse("/ui/login?error=unknown+or+revoked+token", 303)
    response = RedirectResponse("/ui/", 303)
    response.set_cookie(SESSION_COOKIE, token.strip(), httponly=True, samesite="strict",
                        path="/", max_age=12 * 3600)
    return response


@router.post("/logout", dependencies=[Depends(_same_origin)])
def logout() -> Response:
    response = RedirectResponse("/ui/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def tasks_page(request: Request, msg: str | None = None, app: App = Depends(get_app),
               me: TokenView = Depends(_viewer)) -> HTMLResponse:
    return _render(request, "tasks.html", me, tasks=tasks_uc.list_tasks(app),
                   candidates=refs_uc.list_candidates(app, state="pending"), msg=msg)


@router.get("/tasks/{name}")
def task_page(request: Request, name: str, msg: str | None = None,
              app: App = Depends(get_app), me: TokenView = Depends(_viewer)) -> HTMLResponse:
    task = tasks_uc.get_task(app, name)
    pending = refs_uc.list_candidates(app, name, "pending")
    previews = {}
    for c in pending:
        slices = refs_uc.list_slices(app, name, candidate_id=c.id, limit=2000)
        step = max(1, len(slices) // 8)
        previews[c.id] = slices[::step][:8]
    approved = refs_uc.list_slices(app, name, state="approved", limit=60)
    return _render(request, "task.html", me, task=task, pending=pending, previews=previews,
                   approved=approved, decided=[c for c in refs_uc.list_candidates(app, name)
                                               if c.state != "pending"][:20],
                   versions=refs_uc.list_reference_sets(app, name), msg=msg)


@router.get("/slices/{slice_id}.png")
def slice_png(slice_id: int, app: App = Depends(get_app),
              _: TokenView = Depends(_viewer)) -> Response:
    return Response(refs_uc.slice_thumbnail(app, slice_id), media_type="image/png")


@router.post("/candidates/{candidate_id}/approve", dependencies=[Depends(form_csrf)])
def approve(candidate_id: int, back: str = Form("/ui/"), app: App = Depends(get_app),
            who: TokenView = Depends(RBAC("reviewer"))) -> Response:
    c = refs_uc.approve_candidate(app, actor(who), candidate_id)
    return _back(_local(back), f"candidate {c.id} approved: reference set "
                               f"v{c.reference_set_version}")


@router.post("/candidates/{candidate_id}/reject", dependencies=[Depends(form_csrf)])
def reject(candidate_id: int, back: str = Form("/ui/"), app: App = Depends(get_app),
           who: TokenView = Depends(RBAC("reviewer"))) -> Response:
    refs_uc.reject_candidate(app, actor(who), candidate_id)
    return _back(_local(back), f"candidate {candidate_id} rejected")


@router.post("/slices/{slice_id}/revoke", dependencies=[Depends(form_csrf)])
def revoke(slice_id: int, back: str = Form("/ui/"), app: App = Depends(get_app),
           who: TokenView = Depends(RBAC("reviewer"))) -> Response:
    refs_uc.revoke_slice(app, actor(who), slice_id, "revoked in the web UI")
    return _back(_local(back), f"slice {slice_id} revoked")


@router.post("/tasks/{name}/upload", dependencies=[Depends(form_csrf), Depends(disk_room)])
async def upload(name: str, image: UploadFile | None = File(None),
                 label: UploadFile | None = File(None), app: App = Depends(get_app),
                 who: TokenView = Depends(RBAC("admin"))) -> Response:
    from services.api.routers.references import stage_upload

    request = await stage_upload(app, actor(who), name, image, label, None, None)
    return _back(f"/ui/tasks/{name}", f"upload queued as job {request.job_id} "
                                      f"({request.slices} slices)")


@router.get("/jobs")
def jobs_page(request: Request, state: str | None = None, task: str | None = None,
              app: App = Depends(get_app), me: TokenView = Depends(_viewer)) -> HTMLResponse:
    return _render(request, "jobs.html", me, state=state or "", task=task or "",
                   jobs=jobs_uc.list_jobs(app, state=state or None, task=task or None,
                                          limit=200))


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: int, msg: str | None = None,
             app: App = Depends(get_app), me: TokenView = Depends(_viewer)) -> HTMLResponse:
    return _render(request, "job.html", me, job=jobs_uc.get_job(app, job_id), msg=msg)


@router.post("/jobs/{job_id}/rerun", dependencies=[Depends(form_csrf)])
def rerun(job_id: int, app: App = Depends(get_app),
          who: TokenView = Depends(RBAC("admin"))) -> Response:
    jobs_uc.rerun_job(app, actor(who), job_id)
    return _back(f"/ui/jobs/{job_id}", "re-run queued")


@router.get("/audit")
def audit_page(request: Request, app: App = Depends(get_app),
               me: TokenView = Depends(RBAC("reviewer"))) -> HTMLResponse:
    return _render(request, "audit.html", me, entries=list_audit(app, limit=300))


def _local(url: str) -> str:
    """Only redirect within the UI (never to another site)."""
    return url if url.startswith("/ui/") and "//" not in url else "/ui/"
